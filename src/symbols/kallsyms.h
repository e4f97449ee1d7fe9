/* Names of kernel addresses, from /proc/kallsyms: read once, sorted, looked
 * up by binary search. Without the right to see kernel addresses (they read
 * as 0: kptr_restrict), it names nothing. */
#ifndef KILN_SYMBOLS_KALLSYMS_H
#define KILN_SYMBOLS_KALLSYMS_H

#include <stdint.h>

struct ksyms;

/* NULL when /proc/kallsyms cannot be read or shows no addresses. */
struct ksyms *ksyms__load(void);
/* The function at addr, or NULL. */
const char *ksyms__name(const struct ksyms *k, uint64_t addr);
void ksyms__free(struct ksyms *k);

/* Where user space ends on x86-64: addresses above are the kernel's. */
#define KILN_KERNEL_START 0xffff800000000000ULL

#endif
