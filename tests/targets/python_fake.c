/* A program posing as CPython 3.13 (issue 21, finding 2): it exports
 * Py_Version, _PyEval_EvalFrameDefault, PyCode_Type and a _PyRuntime whose
 * _Py_DebugOffsets name frame, code-object and str offsets of 0xfff0, and
 * spends its time in its "_PyEval_EvalFrameDefault". Built under a name
 * starting with "python" so kiln looks at it. kiln must refuse it in one
 * line and keep sampling it natively, never read past its own buffers.
 *   python_fake SECONDS */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define COOKIE 0x7970677562656478ull /* "xdebugpy" */
#define BAD 0xfff0
const unsigned long Py_Version = 0x030d00f0;
long PyCode_Type[32];
/* word k is byte offset 8k of _Py_DebugOffsets (see include/kiln/python.h) */
uint64_t _PyRuntime[1024] = {
	[0] = COOKIE, [1] = 0x030d00f0, [4] = 608, [5] = 632, [8] = 7264, [9] = 7344,
	[21] = 8, [23] = 72, [25] = 160,
	[29] = BAD, [30] = BAD, [31] = BAD, [33] = BAD,            /* frame: previous, code, instr, owner */
	[35] = BAD, [36] = BAD, [37] = BAD, [38] = BAD, [39] = BAD, [43] = BAD, /* code object */
	[65] = BAD, [66] = BAD, [68] = BAD, [69] = BAD, [70] = 0xfff8, /* bytes, str */
};

#include "fake_eval.h"

int main(int argc, char **argv)
{
	double sec = argc > 1 ? atof(argv[1]) : 1.0;
	return _PyEval_EvalFrameDefault(sec) < 0;
}
