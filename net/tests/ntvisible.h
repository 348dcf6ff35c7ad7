/* SPDX-License-Identifier: MIT */
/*
 * ntvisible.h - what the tests of the network layer's visibility share
 * (net-status, net-metrics, net-hmac): running the pagetrack command to a
 * file with a deadline, reading a file, one HTTP request over a socket, and
 * a checker of the Prometheus text format that knows nothing of how
 * pagetrack writes it.  Include after nettest.h.
 */
#ifndef PT_NET_TEST_VISIBLE_H
#define PT_NET_TEST_VISIBLE_H

#include <ctype.h>
#include <math.h>
#include <poll.h>

/*
 * Run argv (a NULL-terminated list) with its output (stdout and stderr) to
 * log, at most 60 s.  Returns its exit status, 128 + signal when killed.
 */
static inline int nt_run(char *const argv[], const char *log)
{
	pid_t pid;
	int status;

	unlink(log);
	pid = nt_spawn(argv, log);
	for (int i = 0; i < 6000; i++) {	/* 60 s */
		if (waitpid(pid, &status, WNOHANG) == pid) {
			nt_forget(pid);
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		nt_sleep_ms(10);
	}
	nt_kill(pid, SIGKILL);
	DIE("%s %s did not end in 60 s", argv[0], argv[1]);
}

/* The content of path, NUL-terminated (free it); NULL when unreadable. */
static inline char *nt_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f)
		return NULL;
	do {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap);
			if (!buf)
				DIE("out of memory");
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n);
	fclose(f);
	buf[len] = '\0';
	return buf;
}

/*
 * Send request (a whole HTTP/1.0 request) to ip:port and read the answer
 * until the server closes, at most 10 s, into buf (NUL-terminated).
 * Returns the status code, 0 when the server closed without answering, or
 * -errno when no connection could be made.
 */
static inline int nt_http(const char *ip, int port, const char *request, char *buf, size_t cap)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	size_t len = 0;
	uint64_t start = nt_ms();
	int fd, code = 0;

	if (inet_pton(AF_INET, ip, &a.sin_addr) != 1)
		DIE("bad address %s", ip);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		DIE("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		int err = -errno;

		close(fd);
		return err;
	}
	if (write(fd, request, strlen(request)) != (ssize_t)strlen(request))
		DIE("sending the request: %s", strerror(errno));
	while (len + 1 < cap && nt_ms() - start < 10000) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	if (len && sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
		DIE("not an HTTP answer from %s:%d: '%.80s'", ip, port, buf);
	return code;
}

/* The body of an HTTP answer in buf (after the blank line), "" if none. */
static inline const char *nt_http_body(const char *buf)
{
	const char *p = strstr(buf, "\r\n\r\n");

	return p ? p + 4 : "";
}

static inline bool nt_prom_name_ok(const char *s, size_t n)
{
	if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
			return false;
	return true;
}

/*
 * Check text against the Prometheus text exposition format (0.0.4): HELP
 * and TYPE before a family's samples, every sample of a family together
 * (a family never comes back), sample names of the family, labels
 * name="value" with only the escapes \\ \" \n, values that are numbers,
 * a newline at the end.  Returns 0 or -1 with why.
 */
static inline int nt_prom_check(const char *text, char *why, size_t why_len)
{
	char family[128] = "", done[64][128];
	int ndone = 0, line_no = 0;
	const char *line = text;

	if (!*text || text[strlen(text) - 1] != '\n') {
		snprintf(why, why_len, "empty, or no newline at the end");
		return -1;
	}
	for (; *line; line = strchr(line, '\n') + 1) {
		size_t len = (size_t)(strchr(line, '\n') - line), n;
		const char *p = line, *end = line + len;
		char *vend;

		line_no++;
		if (!len)
			continue;
		if (!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7)) {
			const char *name = line + 7, *sp = memchr(name, ' ', (size_t)(end - name));

			n = sp ? (size_t)(sp - name) : (size_t)(end - name);
			if (!sp || !nt_prom_name_ok(name, n) || n >= sizeof(family))
				goto bad;
			if (strlen(family) != n || strncmp(family, name, n)) {
				for (int i = 0; i < ndone; i++)
					if (strlen(done[i]) == n && !strncmp(done[i], name, n)) {
						snprintf(why, why_len, "line %d: family %.*s again",
							 line_no, (int)n, name);
						return -1;
					}
				if (family[0] && ndone < 64)
					snprintf(done[ndone++], sizeof(done[0]), "%s", family);
				snprintf(family, sizeof(family), "%.*s", (int)n, name);
			}
			if (line[2] == 'T' && strncmp(sp + 1, "gauge", (size_t)(end - sp - 1)) &&
			    strncmp(sp + 1, "counter", (size_t)(end - sp - 1)))
				goto bad;
			continue;
		}
		if (line[0] == '#')
			continue;
		while (p < end && *p != '{' && *p != ' ')
			p++;
		n = (size_t)(p - line);
		if (!nt_prom_name_ok(line, n) || strlen(family) != n || strncmp(family, line, n)) {
			snprintf(why, why_len, "line %d: sample '%.*s' outside its family (%s)",
				 line_no, (int)len, line, family);
			return -1;
		}
		if (*p == '{') {
			p++;
			while (p < end && *p != '}') {
				const char *k = p;

				while (p < end && *p != '=')
					p++;
				if (p + 1 >= end || !nt_prom_name_ok(k, (size_t)(p - k)) || p[1] != '"')
					goto bad;
				for (p += 2; p < end && *p != '"'; p++) {
					if (*p == '\\') {
						p++;
						if (p >= end || (*p != '\\' && *p != '"' && *p != 'n'))
							goto bad;
					}
				}
				if (p >= end)
					goto bad;
				p++;
				if (p < end && *p == ',')
					p++;
			}
			if (p >= end)
				goto bad;
			p++;
		}
		if (p >= end || *p != ' ')
			goto bad;
		p++;
		strtod(p, &vend);
		if (vend == p || vend != end)
			goto bad;
	}
	return 0;
bad:
	snprintf(why, why_len, "line %d is not in the format", line_no);
	return -1;
}

/*
 * The value of the sample name{labels} (labels exactly as written, "" for
 * none) in text; NAN when there is none.
 */
static inline double nt_prom_value(const char *text, const char *name, const char *labels)
{
	char key[512];
	const char *p;

	snprintf(key, sizeof(key), "\n%s%s%s%s ", name, *labels ? "{" : "", labels,
		 *labels ? "}" : "");
	p = strstr(text, key);
	if (!p && !strncmp(text, key + 1, strlen(key + 1)))
		p = text - 1;
	return p ? strtod(p + strlen(key), NULL) : NAN;
}

#endif /* PT_NET_TEST_VISIBLE_H */
