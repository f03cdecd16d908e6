/*
 * krb5_wss.so: the front module of the krb5-wss plugin.
 *
 * MIT libkrb5 loads every file in its locate-plugin directory into every
 * process that uses it (kinit, sshd, curl, ...). This small C module is what
 * it loads: for a realm that cannot be served over wss it answers "not mine"
 * after a few in-memory profile queries, and nothing else is ever loaded.
 * Only for a realm that may be (krb5.conf names a ws:// or wss:// URL, or the
 * realm has no kdc lines and libkrb5 would look in DNS) does it load the
 * Rust core, krb5-wss/krb5_wss_core.so next to itself, and hand it the call.
 *
 * It also exports the hook functions of include/krb5_wss.h, forwarding them
 * to the core, so programs link against this file (the one libkrb5 loads).
 * The header is included below so the compiler checks the signatures.
 */
#define _GNU_SOURCE /* dladdr */
#include <sys/socket.h> /* before locate_plugin.h, which uses struct sockaddr */

#include <dlfcn.h>
#include <errno.h>
#include <krb5/krb5.h>
#include <krb5/locate_plugin.h>
#include <profile.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "krb5_wss.h"

#define CORE_PATH "krb5-wss/krb5_wss_core.so"

/* The core, loaded at most once per process (kept loaded: RTLD_NODELETE). */
static pthread_once_t core_once = PTHREAD_ONCE_INIT;
static const krb5plugin_service_locate_ftable *core_locator;
static krb5_error_code (*core_send)(krb5_context, void *, const krb5_data *, const krb5_data *,
                                    krb5_data **, krb5_data **);
static krb5_error_code (*core_recv)(krb5_context, void *, krb5_error_code, const krb5_data *,
                                    const krb5_data *, const krb5_data *, krb5_data **);
static krb5_error_code (*core_install)(krb5_context);
static const char *(*core_version)(void);
static char core_error[8192];

krb5plugin_service_locate_ftable service_locator;

static void
load_core(void)
{
    Dl_info info;
    char path[4096];
    const char *slash;
    void *h;

    if (dladdr((void *)&service_locator, &info) == 0 || info.dli_fname == NULL) {
        snprintf(core_error, sizeof(core_error), "cannot find where krb5_wss.so was loaded from");
        return;
    }
    slash = strrchr(info.dli_fname, '/');
    if (slash == NULL) {
        snprintf(path, sizeof(path), "./%s", CORE_PATH);
    } else if ((size_t)snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - info.dli_fname),
                                info.dli_fname, CORE_PATH) >= sizeof(path)) {
        snprintf(core_error, sizeof(core_error), "plugin path too long");
        return;
    }
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (h == NULL) {
        snprintf(core_error, sizeof(core_error), "cannot load %s: %s", path, dlerror());
        return;
    }
    core_send = (krb5_error_code(*)(krb5_context, void *, const krb5_data *, const krb5_data *,
                                    krb5_data **, krb5_data **))dlsym(h, "krb5_wss_send_hook");
    core_recv = (krb5_error_code(*)(krb5_context, void *, krb5_error_code, const krb5_data *,
                                    const krb5_data *, const krb5_data *,
                                    krb5_data **))dlsym(h, "krb5_wss_recv_hook");
    core_install = (krb5_error_code(*)(krb5_context))dlsym(h, "krb5_wss_install_hooks");
    core_version = (const char *(*)(void))dlsym(h, "krb5_wss_version");
    core_locator = dlsym(h, "service_locator");
    if (core_locator == NULL || core_send == NULL || core_recv == NULL || core_install == NULL ||
        core_version == NULL) {
        core_locator = NULL;
        snprintf(core_error, sizeof(core_error), "%s is not a krb5-wss core", path);
    }
}

static int
core_loaded(void)
{
    pthread_once(&core_once, load_core);
    return core_locator != NULL;
}

/* True when s (after leading blanks) starts with ws:// or wss://, any case. */
static int
is_websocket_url(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return strncasecmp(s, "wss://", 6) == 0 || strncasecmp(s, "ws://", 5) == 0;
}

/* MIT's boolean words; -1 when the value is not one. */
static int
parse_bool(const char *s)
{
    static const char *const yes[] = {"y", "yes", "true", "t", "1", "on", NULL};
    static const char *const no[] = {"n", "no", "false", "f", "nil", "0", "off", NULL};
    int i;

    for (i = 0; yes[i] != NULL; i++)
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
    for (i = 0; no[i] != NULL; i++)
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    return -1;
}

/* Calls f on each value of [section] a b; returns how many there were. */
static int
each_value(profile_t p, const char *section, const char *a, const char *b,
           int (*f)(const char *, void *), void *arg)
{
    const char *names[4] = {section, a, b, NULL};
    char **values = NULL;
    int n = 0;

    if (profile_get_values(p, names, &values) != 0 || values == NULL)
        return 0;
    for (n = 0; values[n] != NULL; n++)
        if (f != NULL)
            f(values[n], arg);
    profile_free_list(values);
    return n;
}

static int
note_url(const char *value, void *arg)
{
    if (is_websocket_url(value))
        *(int *)arg = 1;
    return 0;
}

static int
note_bool(const char *value, void *arg)
{
    int *out = arg;

    if (*out < 0)
        *out = parse_bool(value);
    return 0;
}

enum ownership { NOT_OURS, MAYBE_OURS, OURS };

/*
 * The cheap test, a superset of the core's: OURS when krb5.conf names a
 * WebSocket URL for the realm; MAYBE_OURS when the realm has no kdc lines
 * and libkrb5 would consult DNS (dns_lookup_kdc, else dns_fallback, default
 * on), since DNS may name one; NOT_OURS otherwise.
 */
static enum ownership
ownership(krb5_context ctx, const char *realm)
{
    static const char *const keys[] = {"kdc", "primary_kdc", "master_kdc", "kpasswd_server", NULL};
    profile_t p = NULL;
    int url = 0, kdc_lines = 0, dns = -1, i;

    if (krb5_get_profile(ctx, &p) != 0)
        return NOT_OURS;
    for (i = 0; keys[i] != NULL; i++) {
        int n = each_value(p, "realms", realm, keys[i], note_url, &url);
        if (i == 0)
            kdc_lines = n;
    }
    if (!url && kdc_lines == 0) {
        each_value(p, "libdefaults", "dns_lookup_kdc", NULL, note_bool, &dns);
        if (dns < 0)
            each_value(p, "libdefaults", "dns_fallback", NULL, note_bool, &dns);
    }
    profile_release(p);
    if (url)
        return OURS;
    return (kdc_lines == 0 && dns != 0) ? MAYBE_OURS : NOT_OURS;
}

static krb5_error_code
front_init(krb5_context ctx, void **blob)
{
    *blob = ctx;
    return 0;
}

static void
front_fini(void *blob)
{
    (void)blob;
}

static krb5_error_code
front_lookup(void *blob, enum locate_service_type svc, const char *realm, int socktype,
             int family, int (*cbfunc)(void *, int, struct sockaddr *), void *cbdata)
{
    krb5_context ctx = blob;
    enum ownership own;
    void *core_blob = NULL;
    krb5_error_code ret;

    if (ctx == NULL || realm == NULL)
        return KRB5_PLUGIN_NO_HANDLE;
    own = ownership(ctx, realm);
    if (own == NOT_OURS)
        return KRB5_PLUGIN_NO_HANDLE;
    if (!core_loaded()) {
        if (own == MAYBE_OURS)
            return KRB5_PLUGIN_NO_HANDLE;
        /* A wss realm must never fall back to libkrb5 silently. */
        krb5_set_error_message(ctx, KRB5_KDC_UNREACH, "krb5-wss: realm %s: %s", realm, core_error);
        return KRB5_KDC_UNREACH;
    }
    ret = core_locator->init(ctx, &core_blob);
    if (ret)
        return KRB5_PLUGIN_NO_HANDLE;
    ret = core_locator->lookup(core_blob, svc, realm, socktype, family, cbfunc, cbdata);
    core_locator->fini(core_blob);
    return ret;
}

krb5plugin_service_locate_ftable service_locator = {
    0, front_init, front_fini, front_lookup,
};

const char *
krb5_wss_version(void)
{
    return core_loaded() ? core_version() : "unknown (krb5-wss core not loaded)";
}

krb5_error_code
krb5_wss_send_hook(krb5_context context, void *data, const krb5_data *realm,
                   const krb5_data *message, krb5_data **new_message_out,
                   krb5_data **new_reply_out)
{
    if (!core_loaded())
        return 0; /* pass through: libkrb5 sends as usual */
    return core_send(context, data, realm, message, new_message_out, new_reply_out);
}

krb5_error_code
krb5_wss_recv_hook(krb5_context context, void *data, krb5_error_code code,
                   const krb5_data *realm, const krb5_data *message, const krb5_data *reply,
                   krb5_data **new_reply_out)
{
    if (!core_loaded())
        return code;
    return core_recv(context, data, code, realm, message, reply, new_reply_out);
}

krb5_error_code
krb5_wss_install_hooks(krb5_context context)
{
    if (context == NULL)
        return EINVAL;
    if (!core_loaded()) {
        krb5_set_error_message(context, KRB5_PLUGIN_OP_NOTSUPP, "krb5-wss: %s", core_error);
        return KRB5_PLUGIN_OP_NOTSUPP;
    }
    return core_install(context);
}
