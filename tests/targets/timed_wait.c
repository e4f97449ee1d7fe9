/* One thread, in a wait with a timeout again and again: the stops of a heap
 * attach (and its detach) fall on it (kiln injects its calls into a thread
 * that waits) and end the wait with EINTR (signal(7): epoll_wait is never
 * restarted after a stop).
 *   usage: timed_wait [rounds] [ms]   (default 40 rounds of 100 ms)
 * Prints "ready", then "timed_wait: E waits ended by EINTR" and exits 0.
 * Known facts: E is 0 without a tracer (no signal is sent to it); under
 * kiln it is the count kiln's report says its stops ended. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 40, ms = argc > 2 ? atoi(argv[2]) : 100, ended = 0;
	int ep = epoll_create1(0);
	struct epoll_event ev;
	printf("ready\n");
	fflush(stdout);
	for (int i = 0; i < rounds; i++)
		if (epoll_wait(ep, &ev, 1, ms) < 0 && errno == EINTR)
			ended++;
	printf("timed_wait: %d waits ended by EINTR\n", ended);
	return 0;
}
