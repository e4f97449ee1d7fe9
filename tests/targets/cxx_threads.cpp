// Four threads churning C++ containers (vector, map, string, unique_ptr,
// aligned new): everything they allocate is freed, so no leak may be
// reported under churn_worker; new/delete go through the shim's malloc.
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>
struct alignas(64) Aligned { char b[128]; };
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")
__attribute__((noinline)) void churn_worker(int seed)
{
	for (int round = 0; round < 20000; round++) {
		std::vector<int> v;
		for (int i = 0; i < 50; i++) v.push_back(i * seed);
		ESCAPE(v.data());
		std::map<int, std::string> m;
		for (int i = 0; i < 8; i++) { m[i] = std::string(40 + i, 'x'); ESCAPE(m[i].data()); }
		auto p = std::make_unique<Aligned>();
		p->b[0] = (char)round;
		ESCAPE(p.get());
		int *arr = new int[17];
		arr[0] = round;
		ESCAPE(arr);
		delete[] arr;
	}
}
int main()
{
	std::vector<std::thread> ts;
	for (int i = 0; i < 4; i++) ts.emplace_back(churn_worker, i + 1);
	for (auto &t : ts) t.join();
	return 0;
}
