/*
 * krb5_loop: gets initial credentials COUNT times in ONE process, sleeping
 * INTERVAL_MS between attempts, printing one line per attempt. Used by the
 * tests to observe what the plugin does across lookups of one process
 * (DNS caching, URL skipping, connection reuse).
 *
 * usage: krb5_loop PRINCIPAL PASSWORD COUNT INTERVAL_MS
 */
#include <krb5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
    krb5_context ctx;
    krb5_principal princ;
    krb5_error_code ret;
    int i, count, interval_ms, failures = 0;

    if (argc != 5) {
        fprintf(stderr, "usage: %s PRINCIPAL PASSWORD COUNT INTERVAL_MS\n", argv[0]);
        return 2;
    }
    count = atoi(argv[3]);
    interval_ms = atoi(argv[4]);
    ret = krb5_init_context(&ctx);
    if (ret) {
        fprintf(stderr, "krb5_init_context: %d\n", ret);
        return 1;
    }
    ret = krb5_parse_name(ctx, argv[1], &princ);
    if (ret) {
        fprintf(stderr, "krb5_parse_name: %s\n", krb5_get_error_message(ctx, ret));
        return 1;
    }
    for (i = 0; i < count; i++) {
        krb5_creds creds;

        if (i > 0)
            usleep((useconds_t)interval_ms * 1000);
        memset(&creds, 0, sizeof(creds));
        ret = krb5_get_init_creds_password(ctx, &creds, princ, argv[2], NULL,
                                           NULL, 0, NULL, NULL);
        if (ret) {
            const char *msg = krb5_get_error_message(ctx, ret);
            printf("attempt %d: error: %s\n", i + 1, msg);
            krb5_free_error_message(ctx, msg);
            failures++;
        } else {
            printf("attempt %d: ok\n", i + 1);
            krb5_free_cred_contents(ctx, &creds);
        }
        fflush(stdout);
    }
    krb5_free_principal(ctx, princ);
    krb5_free_context(ctx);
    return failures ? 1 : 0;
}
