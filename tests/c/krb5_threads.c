/*
 * krb5_threads: THREADS threads, each with its own context, each getting a
 * TGT and then COUNT service tickets from the KDC (never from a cache),
 * all at once. Prints a summary; exits non-zero on any error.
 *
 *   usage: krb5_threads PRINCIPAL PASSWORD SERVICE THREADS COUNT
 */
#include <krb5.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_client, *g_password, *g_service;
static int g_count;

struct result {
    int ok;
    char error[256];
};

static void *
worker(void *arg)
{
    struct result *res = arg;
    krb5_context ctx;
    krb5_principal client, server;
    krb5_ccache cc;
    krb5_creds creds, in, *out;
    krb5_error_code ret;
    int i;

    if (krb5_init_context(&ctx) != 0) {
        snprintf(res->error, sizeof(res->error), "krb5_init_context failed");
        return NULL;
    }
    krb5_parse_name(ctx, g_client, &client);
    krb5_parse_name(ctx, g_service, &server);
    krb5_cc_new_unique(ctx, "MEMORY", NULL, &cc);
    memset(&creds, 0, sizeof(creds));
    ret = krb5_get_init_creds_password(ctx, &creds, client, g_password, NULL, NULL, 0, NULL, NULL);
    if (ret == 0)
        ret = krb5_cc_initialize(ctx, cc, client);
    if (ret == 0)
        ret = krb5_cc_store_cred(ctx, cc, &creds);
    for (i = 0; ret == 0 && i < g_count; i++) {
        memset(&in, 0, sizeof(in));
        in.client = client;
        in.server = server;
        ret = krb5_get_credentials(ctx, KRB5_GC_NO_STORE, cc, &in, &out);
        if (ret == 0) {
            krb5_free_creds(ctx, out);
            res->ok++;
        }
    }
    if (ret) {
        const char *m = krb5_get_error_message(ctx, ret);
        snprintf(res->error, sizeof(res->error), "%s", m);
        krb5_free_error_message(ctx, m);
    }
    krb5_free_cred_contents(ctx, &creds);
    krb5_cc_destroy(ctx, cc);
    krb5_free_principal(ctx, client);
    krb5_free_principal(ctx, server);
    krb5_free_context(ctx);
    return NULL;
}

int
main(int argc, char **argv)
{
    int n, i, total = 0, errors = 0;
    pthread_t *t;
    struct result *r;

    if (argc != 6) {
        fprintf(stderr, "usage: %s PRINCIPAL PASSWORD SERVICE THREADS COUNT\n", argv[0]);
        return 2;
    }
    g_client = argv[1];
    g_password = argv[2];
    g_service = argv[3];
    n = atoi(argv[4]);
    g_count = atoi(argv[5]);
    t = calloc(n, sizeof(*t));
    r = calloc(n, sizeof(*r));
    for (i = 0; i < n; i++)
        pthread_create(&t[i], NULL, worker, &r[i]);
    for (i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        total += r[i].ok;
        if (r[i].error[0]) {
            errors++;
            printf("thread %d: error: %s\n", i, r[i].error);
        }
    }
    printf("%d threads, %d service tickets, %d errors\n", n, total, errors);
    free(t);
    free(r);
    return errors ? 1 : 0;
}
