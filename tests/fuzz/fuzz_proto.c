/* libFuzzer target: the browser frame parser and the encoders it feeds. */
#include "proto.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_frame_t f;
    const char *code, *reason;
    char cid[80];

    if (gw_proto_parse((const char *)data, size, 8192, &f, &code, &reason, cid, sizeof(cid)) == 0) {
        if (f.op == GW_OP_SEND) {
            gw_msg_t m = {1, 2, "a@b", "c@d", f.body, f.body_len, f.kind, f.cid};
            gw_payload_unref(gw_proto_msg(&m, "c@d", 1));
        }
        if (f.op == GW_OP_PING)
            gw_payload_unref(gw_proto_pong(f.t_json));
        gw_frame_free(&f);
    } else {
        gw_payload_unref(gw_proto_error(code, reason, cid[0] ? cid : NULL));
    }
    return 0;
}
