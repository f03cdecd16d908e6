/*
 * hooks_client: a program that uses krb5-wss through its C interface only
 * (include/krb5_wss.h): it installs the send/recv hooks on its own context,
 * then gets a TGT with a password and service tickets.
 *
 *   usage: hooks_client [--no-hooks] PRINCIPAL PASSWORD SERVICE [COUNT]
 *
 * Prints one line per step. COUNT service tickets are requested from the
 * KDC (not taken from a cache). --no-hooks skips krb5_wss_install_hooks,
 * for comparison. Built by meson (examples/) and by the tests.
 */
#include <krb5_wss.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int
fail(krb5_context ctx, krb5_error_code ret, const char *what)
{
    const char *msg = krb5_get_error_message(ctx, ret);
    fprintf(stderr, "hooks_client: %s: %s\n", what, msg);
    krb5_free_error_message(ctx, msg);
    return 1;
}

int
main(int argc, char **argv)
{
    krb5_context ctx;
    krb5_error_code ret;
    krb5_principal client, server;
    krb5_ccache cc;
    krb5_creds creds, in, *out;
    struct timespec t0, t1;
    int hooks = 1, i, count = 1;

    if (argc > 1 && strcmp(argv[1], "--no-hooks") == 0) {
        hooks = 0;
        argv++;
        argc--;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: hooks_client [--no-hooks] PRINCIPAL PASSWORD SERVICE [COUNT]\n");
        return 2;
    }
    if (argc > 4)
        count = atoi(argv[4]);
    printf("krb5-wss %s\n", krb5_wss_version());
    if ((ret = krb5_init_context(&ctx)) != 0)
        return 1;
    if (hooks) {
        if ((ret = krb5_wss_install_hooks(ctx)) != 0)
            return fail(ctx, ret, "krb5_wss_install_hooks");
        printf("hooks installed\n");
    }
    if ((ret = krb5_parse_name(ctx, argv[1], &client)) != 0)
        return fail(ctx, ret, "parse client");
    if ((ret = krb5_parse_name(ctx, argv[3], &server)) != 0)
        return fail(ctx, ret, "parse service");
    if ((ret = krb5_cc_new_unique(ctx, "MEMORY", NULL, &cc)) != 0)
        return fail(ctx, ret, "ccache");
    memset(&creds, 0, sizeof(creds));
    ret = krb5_get_init_creds_password(ctx, &creds, client, argv[2], NULL, NULL, 0, NULL, NULL);
    if (ret)
        return fail(ctx, ret, "initial credentials");
    if ((ret = krb5_cc_initialize(ctx, cc, client)) != 0 ||
        (ret = krb5_cc_store_cred(ctx, cc, &creds)) != 0)
        return fail(ctx, ret, "store TGT");
    printf("TGT ok\n");

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < count; i++) {
        memset(&in, 0, sizeof(in));
        in.client = client;
        in.server = server;
        ret = krb5_get_credentials(ctx, KRB5_GC_NO_STORE, cc, &in, &out);
        if (ret)
            return fail(ctx, ret, "service ticket");
        krb5_free_creds(ctx, out);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("service tickets ok: %d in %.3f ms\n", count,
           (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);

    krb5_free_cred_contents(ctx, &creds);
    krb5_cc_destroy(ctx, cc);
    krb5_free_principal(ctx, client);
    krb5_free_principal(ctx, server);
    krb5_free_context(ctx);
    return 0;
}
