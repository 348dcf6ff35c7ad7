/* SPDX-License-Identifier: MIT */
/*
 * nats-leaders - move JetStream streams' Raft leaders off one server, for
 * net/cluster.sh --leaders-elsewhere: a failover drill that loses a node
 * leading none of the groups the standby needs, so that the failover time
 * is pagetrack's (the lease, the promotion, the engine, the clients) and
 * not nats-server's election (a follower waits 4 to 9 s for a lost
 * leader before it campaigns).
 *
 *   nats-leaders URL[,URL...] SERVER STREAM...
 *
 * For each stream: read who leads it; while SERVER does, ask the leader to
 * step down ($JS.API.STREAM.LEADER.STEPDOWN.<stream>) and read again, at
 * most 20 times.  Prints "STREAM: leader NAME" for each (or that there is
 * no such stream); exit 0 when no stream is led by SERVER any more, 1 otherwise (with the reason), 2 on a
 * usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* The stream's leader into name (empty: none now).  0; 1 when there is
 * no such stream; -1 on another error (said). */
static int leader_of(jsCtx *js, const char *stream, char *name, size_t n)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);

	name[0] = '\0';
	if (s == NATS_TIMEOUT)
		return 0;	/* no leader to answer yet */
	if (s == NATS_NOT_FOUND)
		return 1;	/* nothing to move */
	if (s != NATS_OK) {
		fprintf(stderr, "nats-leaders: stream %s: %s (JetStream error %d)\n", stream,
			natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	if (si->Cluster && si->Cluster->Leader)
		snprintf(name, n, "%s", si->Cluster->Leader);
	jsStreamInfo_Destroy(si);
	return 0;
}

static int move_off(natsConnection *nc, jsCtx *js, const char *stream, const char *server)
{
	char leader[128], subj[256];

	snprintf(subj, sizeof(subj), "$JS.API.STREAM.LEADER.STEPDOWN.%s", stream);
	for (int i = 0; i < 20; i++) {
		natsMsg *reply = NULL;
		int ret = leader_of(js, stream, leader, sizeof(leader));

		if (ret < 0)
			return -1;
		if (ret) {
			printf("%s: no such stream\n", stream);
			return 0;
		}
		if (leader[0] && strcmp(leader, server)) {
			printf("%s: leader %s\n", stream, leader);
			return 0;
		}
		if (leader[0] &&
		    natsConnection_RequestString(&reply, nc, subj, "", 2000) == NATS_OK)
			natsMsg_Destroy(reply);
		sleep_ms(500);	/* the group elects another */
	}
	fprintf(stderr, "nats-leaders: stream %s: still led by %s after 20 step-downs\n", stream,
		leader[0] ? leader : "nobody");
	return -1;
}

int main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	natsOptions *no = NULL;
	jsCtx *js = NULL;
	jsOptions jo;
	const char *urls[16];
	natsStatus s;
	int n = 0, ret = 0;

	if (argc < 4) {
		fprintf(stderr, "usage: nats-leaders URL[,URL...] SERVER STREAM...\n");
		return 2;
	}
	for (char *save, *tok = strtok_r(argv[1], ",", &save); tok && n < 16;
	     tok = strtok_r(NULL, ",", &save))
		urls[n++] = tok;
	s = natsOptions_Create(&no);
	if (s == NATS_OK)
		s = natsOptions_SetServers(no, urls, n);
	if (s == NATS_OK)
		s = natsConnection_Connect(&nc, no);
	jsOptions_Init(&jo);
	jo.Wait = 2000;
	if (s == NATS_OK)
		s = natsConnection_JetStream(&js, nc, &jo);
	if (s != NATS_OK) {
		fprintf(stderr, "nats-leaders: %s: %s\n", argv[1], natsStatus_GetText(s));
		ret = 1;
	}
	for (int i = 3; !ret && i < argc; i++)
		if (move_off(nc, js, argv[i], argv[2]))
			ret = 1;
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(no);
	nats_Close();
	return ret;
}
