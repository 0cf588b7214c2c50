/*
 * task.h - tiny assertion macros for unit tests: each failure prints
 * file:line and both values, then the test exits non-zero.
 */
#ifndef GW_TASK_H
#define GW_TASK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int task_failures;
static int task_checks;

#define ASSERT(expr)                                                                               \
    do {                                                                                           \
        task_checks++;                                                                             \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #expr);           \
            task_failures++;                                                                       \
        }                                                                                          \
    } while (0)

#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                      \
        task_checks++;                                                                             \
        if (va_ != vb_) {                                                                          \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,  \
                    va_, vb_);                                                                     \
            task_failures++;                                                                       \
        }                                                                                          \
    } while (0)

#define ASSERT_STR(a, b)                                                                           \
    do {                                                                                           \
        const char *sa_ = (a), *sb_ = (b);                                                         \
        task_checks++;                                                                             \
        if (sa_ == NULL || sb_ == NULL || strcmp(sa_, sb_) != 0) {                                 \
            fprintf(stderr, "%s:%d: %s == %s failed:\n  \"%s\"\n  \"%s\"\n", __FILE__, __LINE__,   \
                    #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");                           \
            task_failures++;                                                                       \
        }                                                                                          \
    } while (0)

#define TASK_DONE()                                                                                \
    do {                                                                                           \
        printf("%d checks, %d failed\n", task_checks, task_failures);                              \
        return task_failures ? 1 : 0;                                                              \
    } while (0)

#endif
