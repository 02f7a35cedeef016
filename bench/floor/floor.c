/*
 * The floor agent in C: what answering HAProxy costs with no runtime at all,
 * one read and one write per ready connection (epoll, one thread), for
 * `bench/e2e.ts --runtime floor-c` (it builds this file with `cc -O2` into a
 * temporary folder). A measuring instrument, not an agent to use: like
 * `bench/floor/floor.ts` it answers HAPROXY-HELLO, NOTIFY and
 * HAPROXY-DISCONNECT with fixed frames and checks nothing but lengths.
 *
 * The frames come from spoa's own codec: `-f FILE` holds the AGENT-HELLO, the
 * AGENT-DISCONNECT and the ACK's actions, each behind a 4-byte big-endian
 * length (`floorFile()` in `bench/floor/templates.ts`).
 *
 *   floor -p PORT -f FILE      (PORT 0: any; prints "listening on 127.0.0.1:N")
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FRAME 16380
#define OUT_SIZE (64 * 1024)

struct conn {
	int fd;
	size_t in_len;
	unsigned char in[MAX_FRAME + 4 + 4096];
	unsigned char out[OUT_SIZE];
};

static unsigned char *hello, *bye, *actions;
static uint32_t hello_len, bye_len, actions_len;

static uint32_t be32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void load(const char *path)
{
	static unsigned char file[4096];
	FILE *f = fopen(path, "rb");
	size_t n, at = 0;
	unsigned char **parts[3] = {&hello, &bye, &actions};
	uint32_t *lens[3] = {&hello_len, &bye_len, &actions_len};

	if (!f) { perror(path); exit(2); }
	n = fread(file, 1, sizeof(file), f);
	fclose(f);
	for (int i = 0; i < 3; i++) {
		if (at + 4 > n || at + 4 + be32(file + at) > n) { fprintf(stderr, "floor: bad %s\n", path); exit(2); }
		*lens[i] = be32(file + at);
		*parts[i] = file + at + 4;
		at += 4 + *lens[i];
	}
}

/* Sends out[0, len) whole (small answers on loopback: a short write is rare). */
static int send_all(int fd, const unsigned char *out, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, out, len);
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
		if (w <= 0) return -1;
		out += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Reads once and answers every whole frame; -1 closes the connection. */
static int serve(struct conn *c)
{
	ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
	size_t at = 0, o = 0, end;
	int closing = 0;

	if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
	if (n <= 0) return -1;
	end = c->in_len + (size_t)n;
	while (end - at >= 4) {
		uint32_t len = be32(c->in + at);
		unsigned char *f = c->in + at + 4;
		if (len < 7 || len > MAX_FRAME) return -1;
		if (end - at - 4 < len) break;
		if (f[0] == 1 || f[0] == 2) {
			const unsigned char *frame = f[0] == 1 ? hello : bye;
			uint32_t flen = f[0] == 1 ? hello_len : bye_len;
			if (o + flen > OUT_SIZE) return -1;
			memcpy(c->out + o, frame, flen);
			o += flen;
			closing |= f[0] == 2;
		} else if (f[0] == 3) {
			size_t ids = 5, ack;
			for (int k = 0; k < 2; k++) {
				if (f[ids] >= 240) { ids++; while (ids < len && f[ids] >= 128) ids++; }
				ids++;
			}
			if (ids > len) return -1;
			ack = 5 + (ids - 5) + actions_len;
			if (o + 4 + ack > OUT_SIZE) return -1;
			c->out[o] = ack >> 24; c->out[o + 1] = ack >> 16; c->out[o + 2] = ack >> 8; c->out[o + 3] = ack;
			c->out[o + 4] = 103;
			c->out[o + 5] = c->out[o + 6] = c->out[o + 7] = 0;
			c->out[o + 8] = 1;
			memcpy(c->out + o + 9, f + 5, ids - 5);
			memcpy(c->out + o + 9 + (ids - 5), actions, actions_len);
			o += 4 + ack;
		}
		at += 4 + len;
	}
	memmove(c->in, c->in + at, end - at);
	c->in_len = end - at;
	if (o > 0 && send_all(c->fd, c->out, o) < 0) return -1;
	return closing ? -1 : 0;
}

int main(int argc, char **argv)
{
	int port = 0, one = 1, lfd, ep;
	const char *file = NULL;
	struct sockaddr_in addr = {0};
	socklen_t alen = sizeof(addr);
	struct epoll_event ev, evs[64];

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-p")) port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "-f")) file = argv[i + 1];
	}
	if (!file) { fprintf(stderr, "usage: floor -p PORT -f FILE\n"); return 2; }
	load(file);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	addr.sin_family = AF_INET;
	addr.sin_port = htons(port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 511) < 0) { perror("listen"); return 1; }
	getsockname(lfd, (struct sockaddr *)&addr, &alen);
	fprintf(stderr, "floor (c) info listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
	ep = epoll_create1(0);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c == NULL) {
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
				if (fd < 0) continue;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				c = calloc(1, sizeof(*c));
				if (!c) { close(fd); continue; }
				c->fd = fd;
				ev.events = EPOLLIN;
				ev.data.ptr = c;
				epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
			} else if (serve(c) < 0) {
				close(c->fd);
				free(c);
			}
		}
	}
}
