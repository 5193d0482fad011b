// A minimal blocking ping-pong server for 'make bench': one process per
// connection (fork), blocking read and write; n → n+1, 0 stops it.
// usage: pingpong_server -p PORT
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3 || strcmp(argv[1], "-p") != 0) {
		fprintf(stderr, "usage: %s -p PORT\n", argv[0]);
		return 1;
	}
	signal(SIGCHLD, SIG_IGN);
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (ls < 0) {
		perror("socket");
		return 1;
	}
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 128)) {
		perror("listen");
		return 1;
	}
	pid_t parent = getpid();
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0) {
			// A connection reset before accept, or a full fd table, is
			// that client's problem, not the end of the server.
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
				continue;
			perror("accept");
			return 1;
		}
		pid_t pid = fork();
		if (pid < 0)
			perror("fork");
		if (pid == 0) {
			close(ls);
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			unsigned char b[4];
			for (;;) {
				int got = 0;
				while (got < 4) {
					ssize_t k = read(fd, b + got, 4 - got);
					if (k <= 0)
						_exit(0);
					got += k;
				}
				uint32_t v;
				memcpy(&v, b, 4);
				v = ntohl(v);
				if (v == 0) {
					kill(parent, SIGTERM);
					_exit(0);
				}
				v = htonl(v + 1);
				if (write(fd, &v, 4) != 4)
					_exit(0);
			}
		}
		close(fd);
	}
}
