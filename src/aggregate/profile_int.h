/* What the profile reader's files share: profile.c loads and answers,
 * profile_names.c orders processes and threads and names functions once
 * everything is loaded. */
#ifndef KILN_AGGREGATE_PROFILE_INT_H
#define KILN_AGGREGATE_PROFILE_INT_H

#include "aggregate/profile.h"

/* Each process's and thread's place among those of its name (PROGRAM#N,
 * THREAD#N: how two runs' match in a diff). */
void profile_number_in_order(struct profile *p);
/* Each frame's display name: a function's, qualified by its file or module
 * where two functions of one name would otherwise be one row. */
void profile_name_functions(struct profile *p);

#endif
