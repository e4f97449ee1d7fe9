/* A C++ program that does nothing but link libstdc++ (whose start-up
 * allocates its exception-handling pool: 1 allocation, 72,704 B with
 * GCC 12; valgrind and heaptrack count 1). Known fact: kiln counts exactly
 * the allocations valgrind counts; none of kiln's own. */
#include <iostream>
int main() { return 0; }
