/* The test bed's network probe, built static into a tiny image: can a pod reach HOST:PORT?
 *   probe tcp  HOST PORT        exit 0 once a TCP connection opens (e.g. the apiserver's TLS port)
 *   probe http HOST PORT PATH   sends GET PATH, prints the status line, exit 0 on any HTTP answer
 *   probe whoami                prints uid, gid and whether / is writable (what a security context did)
 * Only IPv4 literals: pods have no DNS on the test bed, and the tests use addresses. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "whoami") == 0) {
    int fd = open("/probe-write-test", O_WRONLY | O_CREAT, 0600);
    printf("uid=%d gid=%d rootfs=%s\n", (int)getuid(), (int)getgid(),
           fd >= 0 ? "writable" : (errno == EROFS ? "read-only" : strerror(errno)));
    return 0;
  }
  if (argc < 4 || (strcmp(argv[1], "http") == 0 && argc < 5)) {
    fprintf(stderr, "usage: probe tcp HOST PORT | probe http HOST PORT PATH | probe whoami\n");
    return 2;
  }
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[3]))};
  if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
    fprintf(stderr, "probe: %s is not an IPv4 address\n", argv[2]);
    return 2;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct timeval timeout = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    perror("probe: connect");
    return 1;
  }
  if (strcmp(argv[1], "tcp") == 0) {
    printf("connected to %s:%s\n", argv[2], argv[3]);
    return 0;
  }
  char request[1024];
  int length = snprintf(request, sizeof request, "GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n", argv[4], argv[2], argv[3]);
  if (write(fd, request, (size_t)length) != length) {
    perror("probe: write");
    return 1;
  }
  char answer[256] = {0};
  ssize_t got = read(fd, answer, sizeof answer - 1);
  if (got <= 0 || strncmp(answer, "HTTP/", 5) != 0) {
    fprintf(stderr, "probe: no HTTP answer\n");
    return 1;
  }
  answer[strcspn(answer, "\r\n")] = 0;
  printf("%s\n", answer);
  return 0;
}
