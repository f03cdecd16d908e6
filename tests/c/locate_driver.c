/*
 * locate_driver: loads krb5_wss.so with dlopen and drives its
 * service_locator table directly, the way libkrb5 does: init, lookup for
 * SOCK_DGRAM then SOCK_STREAM, fini.
 *
 *   locate_driver PLUGIN.so cost REALM N
 *       N lookups for REALM (a realm the plugin does not own), timed;
 *       prints ns per lookup and the process's thread and fd counts
 *       before and after. Writes "MARK begin"/"MARK end" to fd 2 around
 *       the loop so a syscall trace can be cut to it.
 *   locate_driver PLUGIN.so loop REALM N
 *       N owned-realm lookups (each hands back the relay address), then
 *       waits for the plugin's relay to retire; for leak checkers.
 */
#include <sys/socket.h> /* before locate_plugin.h, which uses struct sockaddr */
#include <dirent.h>
#include <dlfcn.h>
#include <krb5.h>
#include <krb5/locate_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int
count_dir(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static int addresses;

static int
callback(void *data, int socktype, struct sockaddr *sa)
{
    (void)data;
    (void)socktype;
    (void)sa;
    addresses++;
    return 0;
}

static krb5_error_code
one_lookup(krb5plugin_service_locate_ftable *t, krb5_context ctx, const char *realm)
{
    void *blob = NULL;
    krb5_error_code ret;

    if (t->init(ctx, &blob) != 0)
        return -1;
    ret = t->lookup(blob, locate_service_kdc, realm, SOCK_DGRAM, AF_UNSPEC, callback, NULL);
    if (ret == 0)
        ret = t->lookup(blob, locate_service_kdc, realm, SOCK_STREAM, AF_UNSPEC, callback, NULL);
    t->fini(blob);
    return ret;
}

int
main(int argc, char **argv)
{
    krb5plugin_service_locate_ftable *t;
    krb5_context ctx;
    void *h;
    int i, n, threads0, fds0;
    struct timespec a, b;
    krb5_error_code ret = 0;

    if (argc != 5)
        return 2;
    n = atoi(argv[4]);
    h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    t = dlsym(h, "service_locator");
    if (t == NULL || krb5_init_context(&ctx) != 0)
        return 1;
    if (strcmp(argv[2], "cost") == 0) {
        /* Warm up (first-use costs: profile parse, lazy symbols). */
        for (i = 0; i < 100; i++)
            one_lookup(t, ctx, argv[3]);
        threads0 = count_dir("/proc/self/task");
        fds0 = count_dir("/proc/self/fd");
        write(2, "MARK begin\n", 11);
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (i = 0; i < n; i++)
            ret |= one_lookup(t, ctx, argv[3]) != KRB5_PLUGIN_NO_HANDLE;
        clock_gettime(CLOCK_MONOTONIC, &b);
        write(2, "MARK end\n", 9);
        printf("lookups %d not-handled %s ns/lookup %.0f threads %d->%d fds %d->%d\n", n,
               ret ? "NO" : "yes",
               ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n, threads0,
               count_dir("/proc/self/task"), fds0, count_dir("/proc/self/fd"));
    } else {
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (i = 0; i < n; i++) {
            ret = one_lookup(t, ctx, argv[3]);
            if (ret != 0) {
                fprintf(stderr, "lookup %d: %d: %s\n", i, ret, krb5_get_error_message(ctx, ret));
                return 1;
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        printf("lookups %d addresses %d ns/lookup %.0f\n", n, addresses,
               ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
        /* Let the relay retire (10 s idle) so its thread exits. */
        sleep(12);
        printf("threads left %d\n", count_dir("/proc/self/task"));
    }
    krb5_free_context(ctx);
    return ret && strcmp(argv[2], "cost") == 0 ? 1 : 0;
}
