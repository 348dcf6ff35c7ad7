/* SPDX-License-Identifier: MIT */
/*
 * prom.c - the Prometheus text exposition writer (prom.h) and the table
 * of the network layer's metrics, shared by `pagetrack status
 * --prometheus` and the /metrics of `publish` and `follow`.
 */
#include <stddef.h>
#include <string.h>

#include "prom.h"

void prom_family(FILE *out, const char *name, enum prom_type type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
		type == PROM_COUNTER ? "counter" : "gauge");
}

/* Length of the valid UTF-8 sequence at s, 0 when there is none. */
static size_t utf8_length(const unsigned char *s)
{
	size_t n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 :
		   (s[0] & 0xf8) == 0xf0 ? 4 : 0;

	if (!n || (n == 2 && s[0] < 0xc2) || (n == 4 && s[0] > 0xf4))
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

static bool valid_utf8(const char *v)
{
	const unsigned char *s = (const unsigned char *)v;

	while (*s) {
		size_t n = utf8_length(s);

		if (!n)
			return false;
		s += n;
	}
	return true;
}

static void label_value(FILE *out, const char *v)
{
	bool utf8 = valid_utf8(v);

	for (const unsigned char *s = (const unsigned char *)v; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(out, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", out);
		else if (*s < 0x20 || *s == 0x7f || (*s >= 0x80 && !utf8))
			fputc('?', out);
		else
			fputc(*s, out);
	}
}

static void sample_name(FILE *out, const char *name, const char *const *labels)
{
	bool first = true;

	fputs(name, out);
	for (size_t i = 0; labels && labels[i]; i += 2) {
		if (!labels[i + 1])
			continue;
		fprintf(out, "%s%s=\"", first ? "{" : ",", labels[i]);
		label_value(out, labels[i + 1]);
		fputc('"', out);
		first = false;
	}
	if (!first)
		fputc('}', out);
}

void prom_u64(FILE *out, const char *name, const char *const *labels, uint64_t v)
{
	sample_name(out, name, labels);
	fprintf(out, " %llu\n", (unsigned long long)v);
}

void prom_i64(FILE *out, const char *name, const char *const *labels, int64_t v)
{
	sample_name(out, name, labels);
	fprintf(out, " %lld\n", (long long)v);
}

void prom_ms(FILE *out, const char *name, const char *const *labels, int64_t ms)
{
	sample_name(out, name, labels);
	fprintf(out, " %s%lld.%03lld\n", ms < 0 ? "-" : "", (long long)(ms < 0 ? -ms : ms) / 1000,
		(long long)(ms < 0 ? -ms : ms) % 1000);
}

/* ------------------------------------------------------------------ */
/* The network figures                                                 */
/* ------------------------------------------------------------------ */

enum kind { K_U64, K_I64, K_MS, K_ERRNO, K_BOOL, K_NS_SECONDS };

static const struct net_metric {
	const char *name;
	enum prom_type type;
	enum kind kind;
	size_t offset;
	bool record_only;		/* a status record's: not in a handle's stats */
	const char *help;
} net_metrics[] = {
#define F(field) offsetof(struct prom_net, field)
	{ "pagetrack_net_up", PROM_GAUGE, K_BOOL, F(up), true,
	  "1 when the status record is live (updated lately by a running process)" },
	{ "pagetrack_net_epoch", PROM_GAUGE, K_I64, F(epoch), false,
	  "publisher: newest epoch the stream acknowledged; follower: the standby's epoch" },
	{ "pagetrack_net_stream_sequence", PROM_GAUGE, K_U64, F(stream_seq), false,
	  "the stream sequence of the last message published or used" },
	{ "pagetrack_net_lag_epochs", PROM_GAUGE, K_U64, F(lag_epochs), false,
	  "publisher: epochs the region is ahead; follower: whole epochs the stream holds "
	  "after the standby's" },
	{ "pagetrack_net_lag_seconds", PROM_GAUGE, K_MS, F(lag_ms), false,
	  "publisher: time since it last had every epoch published; follower: the last "
	  "applied epoch's, from the publisher's clock" },
	{ "pagetrack_net_epochs_total", PROM_COUNTER, K_U64, F(epochs), false,
	  "epochs published or applied by this handle" },
	{ "pagetrack_net_messages_total", PROM_COUNTER, K_U64, F(messages), false,
	  "stream messages published or received" },
	{ "pagetrack_net_pages_total", PROM_COUNTER, K_U64, F(pages), false,
	  "pages published or applied" },
	{ "pagetrack_net_page_bytes_total", PROM_COUNTER, K_U64, F(bytes_raw), false,
	  "bytes of those pages" },
	{ "pagetrack_net_wire_bytes_total", PROM_COUNTER, K_U64, F(bytes_wire), false,
	  "message bytes sent or received" },
	{ "pagetrack_net_page_bytes_per_second", PROM_GAUGE, K_U64, F(bytes_raw_per_s), true,
	  "page bytes a second over the record's last interval" },
	{ "pagetrack_net_wire_bytes_per_second", PROM_GAUGE, K_U64, F(bytes_wire_per_s), true,
	  "message bytes a second over the record's last interval" },
	{ "pagetrack_net_retries_total", PROM_COUNTER, K_U64, F(retries), false,
	  "runs that failed transiently (the network) and resumed" },
	{ "pagetrack_net_last_error", PROM_GAUGE, K_ERRNO, F(last_error), false,
	  "the errno of the last failed run, 0: none" },
	{ "pagetrack_net_record_age_seconds", PROM_GAUGE, K_MS, F(age_ms), true,
	  "time since the status record was written" },
	{ "pagetrack_net_record_updated_timestamp_seconds", PROM_GAUGE, K_NS_SECONDS,
	  F(updated_ns), true, "when the status record was written (Unix time)" },
#undef F
};

/* Field f of v as a signed number of its kind (u64 fields fit: none nears 2^63). */
static int64_t field_value(const struct prom_net *v, const struct net_metric *nm)
{
	const char *field = (const char *)v + nm->offset;
	uint64_t u;
	int64_t s;
	int e;
	bool b;

	switch (nm->kind) {
	case K_I64:
	case K_MS:
		memcpy(&s, field, sizeof(s));
		return s;
	case K_ERRNO:
		memcpy(&e, field, sizeof(e));
		return e < 0 ? -e : e;
	case K_BOOL:
		memcpy(&b, field, sizeof(b));
		return b;
	case K_NS_SECONDS:
		memcpy(&u, field, sizeof(u));
		return (int64_t)(u / 1000000);	/* as milliseconds */
	case K_U64:
		break;
	}
	memcpy(&u, field, sizeof(u));
	return (int64_t)u;
}

void prom_net(FILE *out, const struct prom_net *v, size_t n)
{
	for (size_t m = 0; m < sizeof(net_metrics) / sizeof(net_metrics[0]); m++) {
		const struct net_metric *nm = &net_metrics[m];
		bool header = false;

		for (size_t i = 0; i < n; i++) {
			const char *labels[] = { "dir", v[i].dir, "role", v[i].role, "stream",
						 v[i].stream, "follower", v[i].follower, NULL };
			int64_t x;

			if (nm->record_only && !v[i].from_record)
				continue;
			/* An unknown lag has no sample rather than a wrong one. */
			if (nm->offset == offsetof(struct prom_net, lag_epochs) &&
			    v[i].lag_epochs == UINT64_MAX)
				continue;
			if (!header)
				prom_family(out, nm->name, nm->type, nm->help);
			header = true;
			x = field_value(&v[i], nm);
			if (nm->kind == K_MS || nm->kind == K_NS_SECONDS)
				prom_ms(out, nm->name, labels, x);
			else
				prom_i64(out, nm->name, labels, x);
		}
	}
}
