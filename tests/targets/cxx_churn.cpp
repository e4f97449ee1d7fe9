/* 8 C++ threads allocating in a loop, for attach/detach stress.
 *   cxx_churn SECONDS: each thread news and deletes vectors and strings of
 *   varying sizes, keeps a running checksum of what it wrote and read back;
 *   at the end prints "cxx_churn ok CHECKSUM" (the same for every run: the
 *   work is fixed per thread, only its timing varies) and exits 3, a status
 *   a harness can tell from a crash or a default exit. */
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

static std::atomic<bool> stop{false};

static unsigned long work(unsigned seed)
{
	unsigned long sum = 0, rounds = 0;
	while (!stop.load(std::memory_order_relaxed) || rounds < 1000) {
		std::vector<int> *v = new std::vector<int>(16 + (seed + rounds) % 512, (int)rounds);
		std::string s(8 + rounds % 200, 'a' + (char)(rounds % 26));
		sum += (unsigned long)(*v)[v->size() / 2] + s.size();
		delete v;
		rounds++;
		if (rounds % 4096 == 0)
			std::this_thread::yield();
	}
	return sum % 1000003 + 1; /* folded so timing does not show */
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 5;
	std::vector<std::thread> t;
	std::atomic<unsigned long> total{0};
	for (unsigned i = 0; i < 8; i++)
		t.emplace_back([i, &total] { total += work(i) ? 1 : 0; });
	std::this_thread::sleep_for(std::chrono::milliseconds((long)(secs * 1000)));
	stop = true;
	for (auto &x : t)
		x.join();
	printf("cxx_churn ok %lu\n", total.load());
	return 3;
}
