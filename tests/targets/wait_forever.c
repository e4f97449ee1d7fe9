/* Waits without end that any stop ends with EINTR (signal(7): epoll_wait,
 * sigwaitinfo), while kiln samples and attaches.
 *   usage: wait_forever
 * Thread A: epoll_wait(ep, ..., -1) on an empty epoll set, again and again;
 * thread B: sigwaitinfo({SIGUSR2}), again and again. Every return before
 * its signal counts as early. SIGUSR2 ends B's wait (sigwaitinfo returns
 * it), then SIGUSR1 (only A takes it; its handler sets a flag) ends A's with
 * EINTR. Thread C waits in epoll_wait with a 1 s timeout until A and B are
 * done, counting the waits that returned EINTR (T). Prints "ready", then at
 * the end
 *   "wait_forever: epoll_wait ended by SIGUSR1 (EINTR), sigwaitinfo by SIGUSR2, E early returns, T timed waits ended by EINTR"
 * and exits 0.
 * Known facts: E is 0 (nothing but those two signals ends a wait); T is 0
 * without a tracer, and under kiln --wall the number of waits its report
 * says kiln's stops ended (no signal reaches C: it blocks them all). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
static volatile sig_atomic_t got_usr1;
static int early, timed_eintr, done;
static void on_usr1(int sig) { (void)sig; got_usr1 = 1; }
static void *epoll_thread(void *arg)
{
	(void)arg;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	int ep = epoll_create1(0);
	struct epoll_event ev;
	for (;;) {
		int r = epoll_wait(ep, &ev, 1, -1);
		if (r < 0 && errno == EINTR && got_usr1)
			return NULL;
		__atomic_add_fetch(&early, 1, __ATOMIC_RELAXED);
	}
}
static void *sigwait_thread(void *arg)
{
	(void)arg;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	for (;;) {
		siginfo_t si;
		if (sigwaitinfo(&s, &si) == SIGUSR2)
			return NULL;
		__atomic_add_fetch(&early, 1, __ATOMIC_RELAXED);
	}
}
static void *timed_thread(void *arg)
{
	(void)arg;
	int ep = epoll_create1(0);
	struct epoll_event ev;
	while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE))
		if (epoll_wait(ep, &ev, 1, 1000) < 0 && errno == EINTR)
			timed_eintr++;
	return NULL;
}
int main(void)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &s, NULL); /* the threads start with both blocked */
	pthread_t a, b, c;
	pthread_create(&a, NULL, epoll_thread, NULL);
	pthread_create(&b, NULL, sigwait_thread, NULL);
	pthread_create(&c, NULL, timed_thread, NULL);
	printf("ready\n");
	fflush(stdout);
	pthread_join(b, NULL);
	pthread_join(a, NULL);
	__atomic_store_n(&done, 1, __ATOMIC_RELEASE);
	pthread_join(c, NULL);
	printf("wait_forever: epoll_wait ended by SIGUSR1 (EINTR), sigwaitinfo by SIGUSR2, %d early returns, %d timed waits "
	       "ended by EINTR\n",
	       early, timed_eintr);
	return 0;
}
