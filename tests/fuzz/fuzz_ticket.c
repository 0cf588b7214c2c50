/* libFuzzer target: ticket verification must reject garbage without reading out of bounds. */
#include "ticket.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *t = malloc(size + 1);
    char user[80];

    if (t == NULL)
        return 0;
    memcpy(t, data, size);
    t[size] = '\0';
    (void)gw_ticket_verify(t, "fuzz-secret-0123456789", 1000, user, sizeof(user));
    free(t);
    return 0;
}
