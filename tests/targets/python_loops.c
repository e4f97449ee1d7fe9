/* A program posing as CPython 3.13 with well-formed offsets but a thread
 * list and a frame chain that come back on themselves (issue 21, finding
 * 15): two thread states naming each other as next (one of them this
 * thread's), and two frames each other's previous. kiln must read each
 * once round, say so, and lose no sample to it.
 * Built under a name starting with "python" so kiln looks at it.
 *   python_loops SECONDS */
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define COOKIE 0x7970677562656478ull /* "xdebugpy" */
const unsigned long Py_Version = 0x030d00f0;
uint64_t PyCode_Type[32];
/* word k is byte offset 8k of _Py_DebugOffsets (include/kiln/python.h): the
 * real 3.13 offsets */
uint64_t _PyRuntime[1024] = {
	[0] = COOKIE, [1] = 0x030d00f0, [4] = 608, [5] = 632, [8] = 7264, [9] = 7344,
	[21] = 8, [23] = 72, [25] = 160,
	[29] = 8, [30] = 0, [31] = 56, [33] = 70,
	[35] = 112, [36] = 120, [37] = 128, [38] = 136, [39] = 68, [43] = 200,
	[65] = 16, [66] = 32, [68] = 32, [69] = 16, [70] = 40,
};
static uint64_t interp[1000], ts1[32], ts2[32], frame_a[10], frame_b[10], code[32];
static uint64_t name[8]; /* a compact ASCII str "loop" */

#include "fake_eval.h"

int main(int argc, char **argv)
{
	double sec = argc > 1 ? atof(argv[1]) : 1.0;
	name[1] = (uint64_t)(uintptr_t)PyCode_Type; /* any type: only the state bits are read */
	name[2] = 4;                                 /* length */
	name[4] = (1u << 2) | (1u << 5) | (1u << 6); /* kind 1, compact, ascii */
	__builtin_memcpy((char *)name + 40, "loop", 5);
	code[1] = (uint64_t)(uintptr_t)PyCode_Type;
	code[14] = code[15] = code[16] = (uint64_t)(uintptr_t)name; /* filename, name, qualname */
	((uint32_t *)code)[17] = 1;                                 /* co_firstlineno */
	frame_a[0] = frame_b[0] = (uint64_t)(uintptr_t)code;
	frame_a[1] = (uint64_t)(uintptr_t)frame_b; /* previous, and back */
	frame_b[1] = (uint64_t)(uintptr_t)frame_a;
	frame_a[7] = frame_b[7] = (uint64_t)(uintptr_t)code + 200;
	ts1[1] = (uint64_t)(uintptr_t)ts2; /* next, and back */
	ts2[1] = (uint64_t)(uintptr_t)ts1;
	ts1[9] = (uint64_t)(uintptr_t)frame_a; /* current_frame */
	ts1[20] = (uint64_t)syscall(SYS_gettid);
	ts2[20] = 1;
	interp[918] = (uint64_t)(uintptr_t)ts1; /* threads.head */
	_PyRuntime[79] = (uint64_t)(uintptr_t)interp; /* interpreters.head */
	return _PyEval_EvalFrameDefault(sec) < 0;
}
