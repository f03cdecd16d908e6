/*
 * Section E micro-measure: the cost of the krb5-wss locate plugin for a
 * realm it does not own, without process start-up in the way.
 *
 *   locate_micro PLUGIN.so REALM ITERATIONS
 *
 * Loads the plugin with dlopen (timed: what every libkrb5 process that has
 * the plugin installed pays once), then runs what libkrb5 does around every
 * KDC lookup -- init, lookup(kdc, SOCK_DGRAM), fini -- ITERATIONS times and
 * prints one JSON line with the nanoseconds per lookup. The lookup must
 * answer KRB5_PLUGIN_NO_HANDLE ("not mine"), or this exits 1. KRB5_CONFIG
 * names the krb5.conf whose realm is looked up.
 */
#include <sys/socket.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <krb5/krb5.h>
#include <krb5/locate_plugin.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int callback(void *data, int socktype, struct sockaddr *addr)
{
    (void)data;
    (void)socktype;
    (void)addr;
    return 0;
}

static krb5_error_code one(const krb5plugin_service_locate_ftable *t,
                           krb5_context ctx, const char *realm)
{
    void *blob = NULL;
    krb5_error_code ret = t->init(ctx, &blob);
    if (ret)
        return ret;
    ret = t->lookup(blob, locate_service_kdc, realm, SOCK_DGRAM, AF_UNSPEC,
                    callback, NULL);
    t->fini(blob);
    return ret;
}

int main(int argc, char **argv)
{
    krb5_context ctx;
    const krb5plugin_service_locate_ftable *t;
    double t0, t1, t2;
    long i, n;
    void *h;

    if (argc != 4) {
        fprintf(stderr, "usage: %s PLUGIN.so REALM ITERATIONS\n", argv[0]);
        return 2;
    }
    n = atol(argv[3]);
    if (n < 1 || n > 100000000) {
        fprintf(stderr, "ITERATIONS must be 1..100000000\n");
        return 2;
    }
    if (krb5_init_context(&ctx)) {
        fprintf(stderr, "krb5_init_context failed\n");
        return 1;
    }
    t0 = now();
    h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    t = dlsym(h, "service_locator");
    if (t == NULL) {
        fprintf(stderr, "no service_locator: %s\n", dlerror());
        return 1;
    }
    t1 = now();
    /* The first lookup of a process may set up more than the rest. */
    if (one(t, ctx, argv[2]) != KRB5_PLUGIN_NO_HANDLE) {
        fprintf(stderr, "the plugin claimed realm %s\n", argv[2]);
        return 1;
    }
    t2 = now();
    for (i = 0; i < n; i++) {
        if (one(t, ctx, argv[2]) != KRB5_PLUGIN_NO_HANDLE) {
            fprintf(stderr, "the plugin claimed realm %s\n", argv[2]);
            return 1;
        }
    }
    printf("{\"dlopen_us\":%.1f,\"first_lookup_us\":%.1f,\"lookup_ns\":%.1f,"
           "\"iterations\":%ld}\n",
           (t1 - t0) * 1e6, (t2 - t1) * 1e6, (now() - t2) * 1e9 / n, n);
    krb5_free_context(ctx);
    return 0;
}
