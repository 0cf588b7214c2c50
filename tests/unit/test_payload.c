#include "payload.h"
#include "task.h"

int main(void)
{
    gw_payload_t *p = gw_payload_from("abc", 3);
    gw_sbuf_t b;

    ASSERT(p != NULL);
    ASSERT_EQ(p->len, 3);
    ASSERT_STR((char *)gw_payload_data(p), "abc");
    gw_payload_ref(p);
    ASSERT_EQ(p->refs, 2);
    gw_payload_unref(p);
    gw_payload_unref(p);
    gw_sbuf_init(&b, 10);
    gw_sbuf_printf(&b, "%d-%s", 42, "xy");
    ASSERT_STR(b.data, "42-xy");
    gw_sbuf_puts(&b, "123456");
    ASSERT(b.overflow);
    gw_sbuf_free(&b);
    TASK_DONE();
}
