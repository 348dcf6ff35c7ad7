/* SPDX-License-Identifier: MIT */
/* mprotect.c - placeholder until the backend is written. */
#include <errno.h>
#include "internal.h"

static int stub_probe(char *why, size_t why_len)
{
	return pt_why(why, why_len, -EOPNOTSUPP, "not written yet");
}

const struct pt_backend_ops pt_mprotect_ops = {
	.id = PT_BACKEND_MPROTECT,
	.name = "mprotect",
	.probe = stub_probe,
};
