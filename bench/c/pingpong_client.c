// A minimal blocking ping-pong client: the floor volleyscope's own client
// is compared with in 'make bench'. One pinned thread, one TCP connection
// with TCP_NODELAY, write 4 bytes, read 4 bytes, CLOCK_MONOTONIC around
// each round trip.
//
// usage: pingpong_client HOST PORT COUNT CPU [WARMUP [OUT [SECONDS]]]
// COUNT round trips are made, or as many as fit in SECONDS when that is
// given; the first WARMUP (default 1000) are dropped from the summary.
// With OUT, every round trip's send and reply times (CLOCK_MONOTONIC ns,
// two little-endian int64 each, warm-up included) are written there.
// prints: p50_ns=<v> mean_ns=<v> count=<n>
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int full(int fd, unsigned char *b, int n, int rd)
{
	int got = 0;
	while (got < n) {
		ssize_t k = rd ? read(fd, b + got, n - got) : write(fd, b + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k == 0)
			errno = 0; // EOF: the peer closed
		if (k <= 0)
			return -1;
		got += k;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s HOST PORT COUNT CPU [WARMUP]\n", argv[0]);
		return 1;
	}
	long count = atol(argv[3]), warm = argc > 5 ? atol(argv[5]) : 1000;
	const char *out = argc > 6 ? argv[6] : NULL;
	int64_t stop = argc > 7 ? now_ns() + (int64_t)(atof(argv[7]) * 1e9) : INT64_MAX;
	int cpu = atoi(argv[4]);
	if (count <= warm) {
		fprintf(stderr, "COUNT must exceed WARMUP\n");
		return 1;
	}
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		perror("sched_setaffinity");
		return 1;
	}
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[1]);
		return 1;
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		perror("connect");
		return 1;
	}
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
		perror("setsockopt TCP_NODELAY");
		return 1;
	}
	int64_t *lat = malloc(sizeof(int64_t) * count), *t01 = out ? malloc(2 * sizeof(int64_t) * count) : NULL;
	if (!lat || (out && !t01))
		return 1;
	uint32_t x = 2463534242u;
	for (long i = 0; i < count; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		uint32_t c = x ? x : 1; // never 0: that stops the server
		unsigned char b[4];
		uint32_t be = htonl(c);
		memcpy(b, &be, 4);
		int64_t t0 = now_ns();
		if (full(fd, b, 4, 0)) {
			fprintf(stderr, "round trip %ld: write: %s\n", i, strerror(errno));
			return 1;
		}
		if (full(fd, b, 4, 1)) {
			fprintf(stderr, "round trip %ld: read: %s\n", i, errno ? strerror(errno) : "connection closed");
			return 1;
		}
		int64_t t1 = now_ns();
		lat[i] = t1 - t0;
		if (t01)
			t01[2 * i] = t0, t01[2 * i + 1] = t1;
		memcpy(&be, b, 4);
		if (ntohl(be) != c + 1) {
			fprintf(stderr, "round trip %ld: sent %u, got %u, want %u\n", i, c, ntohl(be), c + 1);
			return 1;
		}
		// The reply's own timestamp ends a timed recording: no extra
		// clock read per round trip, which the floor would count.
		if (i > warm && t1 >= stop) {
			count = i + 1;
			break;
		}
	}
	if (out) {
		// x86-64 and arm64 are little-endian: the array is the file.
		FILE *f = fopen(out, "wb");
		if (!f || fwrite(t01, 2 * sizeof(int64_t), count, f) != (size_t)count || fclose(f) != 0) {
			perror(out);
			return 1;
		}
	}
	long n = count - warm;
	double sum = 0;
	for (long i = warm; i < count; i++)
		sum += lat[i];
	qsort(lat + warm, n, sizeof(int64_t), cmp);
	printf("p50_ns=%lld mean_ns=%.0f count=%ld\n", (long long)lat[warm + n / 2], sum / n, n);
	return 0;
}
