/*
 * krb5_fork_busy: forks a process that is BUSY inside the plugin.
 *
 * The main thread gets initial credentials once (capturing the AS-REQ it
 * sends with a send hook) and asks the plugin, through its service_locator
 * table, for the realm's relay address. Then THREADS threads send that
 * AS-REQ to the relay without pause (a fresh TCP connection each time, as
 * libkrb5 does), so the plugin's relay threads are always inside an
 * exchange: the pool, the URL health map, the registries, the log. The
 * threads themselves never call libkrb5, whose own profile locks are not
 * fork-safe (a libkrb5 program forked while another thread is inside
 * libkrb5 can hang in the child's krb5_init_context, plugin or not).
 * Meanwhile the main thread forks FORKS times; each child, with a new
 * context, gets initial credentials (through the plugin: a new relay, a new
 * connection) and exits. A child not finished within 10 s is killed by its
 * alarm and counted as hung: a lock held by a parent thread at the fork,
 * never released in the child.
 *
 *   usage: krb5_fork_busy PRINCIPAL PASSWORD PLUGIN_SO THREADS FORKS
 *
 * With KRB5_FORK_BUSY_GDB=FILE, the stack of a child still running after 5 s
 * is appended to FILE (gdb), for diagnosis.
 *
 * Prints "FORKS forks: OK ok, HUNG hung, ERR errors; N exchanges in threads".
 * Exits 0 only when every child succeeded and the threads got replies.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <krb5.h>
#include <krb5/locate_plugin.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *princ_name, *password;
static volatile int stop;
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static long exchanges, thread_errors;
static unsigned char *as_req;
static size_t as_req_len;
static struct sockaddr_storage relay;
static socklen_t relay_len;

static krb5_error_code
capture(krb5_context ctx, void *data, const krb5_data *realm, const krb5_data *message,
        krb5_data **new_message_out, krb5_data **new_reply_out)
{
    (void)ctx, (void)data, (void)realm, (void)new_message_out, (void)new_reply_out;
    if (as_req == NULL && (as_req = malloc(message->length)) != NULL) {
        memcpy(as_req, message->data, message->length);
        as_req_len = message->length;
    }
    return 0;
}

static int
got_address(void *data, int socktype, struct sockaddr *sa)
{
    (void)data;
    if (socktype == SOCK_STREAM && sa->sa_family == AF_INET) {
        memcpy(&relay, sa, sizeof(struct sockaddr_in));
        relay_len = sizeof(struct sockaddr_in);
    } else if (socktype == SOCK_STREAM && sa->sa_family == AF_INET6) {
        memcpy(&relay, sa, sizeof(struct sockaddr_in6));
        relay_len = sizeof(struct sockaddr_in6);
    }
    return 0;
}

static krb5_error_code
get_tgt(krb5_context ctx)
{
    krb5_principal princ;
    krb5_creds creds;
    krb5_error_code ret;

    if ((ret = krb5_parse_name(ctx, princ_name, &princ)) != 0)
        return ret;
    memset(&creds, 0, sizeof(creds));
    ret = krb5_get_init_creds_password(ctx, &creds, princ, password, NULL, NULL, 0, NULL, NULL);
    if (ret == 0)
        krb5_free_cred_contents(ctx, &creds);
    krb5_free_principal(ctx, princ);
    return ret;
}

static int
full_io(int fd, unsigned char *buf, size_t n, int writing)
{
    while (n > 0) {
        ssize_t k = writing ? write(fd, buf, n) : read(fd, buf, n);
        if (k <= 0)
            return -1;
        buf += k;
        n -= (size_t)k;
    }
    return 0;
}

/* One exchange with the relay: 4-byte length, the AS-REQ; the reply. */
static int
exchange(void)
{
    unsigned char len[4], reply[65536];
    uint32_t n;
    int fd = socket(relay.ss_family, SOCK_STREAM, 0), ok = -1;

    if (fd < 0)
        return -1;
    n = htonl((uint32_t)as_req_len);
    memcpy(len, &n, 4);
    if (connect(fd, (struct sockaddr *)&relay, relay_len) == 0 && full_io(fd, len, 4, 1) == 0 &&
        full_io(fd, as_req, as_req_len, 1) == 0 && full_io(fd, len, 4, 0) == 0) {
        memcpy(&n, len, 4);
        n = ntohl(n);
        if (n > 0 && n <= sizeof(reply) && full_io(fd, reply, n, 0) == 0)
            ok = 0;
    }
    close(fd);
    return ok;
}

static void *
worker(void *arg)
{
    (void)arg;
    while (!stop) {
        int ret = exchange();

        pthread_mutex_lock(&count_lock);
        if (ret == 0)
            exchanges++;
        else
            thread_errors++;
        pthread_mutex_unlock(&count_lock);
    }
    return NULL;
}

/* The relay's address, asked of the plugin as libkrb5 would. */
static int
find_relay(krb5_context ctx, const char *plugin, const char *realm)
{
    void *h = dlopen(plugin, RTLD_NOW | RTLD_NOLOAD);
    krb5plugin_service_locate_ftable *table;
    void *blob = NULL;

    if (h == NULL) {
        fprintf(stderr, "the plugin %s is not loaded: %s\n", plugin, dlerror());
        return -1;
    }
    table = dlsym(h, "service_locator");
    if (table == NULL || table->init(ctx, &blob) != 0)
        return -1;
    table->lookup(blob, locate_service_kdc, realm, SOCK_STREAM, AF_UNSPEC, got_address, NULL);
    table->fini(blob);
    return relay_len > 0 ? 0 : -1;
}

int
main(int argc, char **argv)
{
    int nthreads, nforks, i, ok = 0, hung = 0, errors = 0;
    krb5_context ctx;
    char *realm;
    pthread_t *threads;

    if (argc != 6) {
        fprintf(stderr, "usage: %s PRINCIPAL PASSWORD PLUGIN_SO THREADS FORKS\n", argv[0]);
        return 2;
    }
    princ_name = argv[1];
    password = argv[2];
    nthreads = atoi(argv[4]);
    nforks = atoi(argv[5]);
    if (krb5_init_context(&ctx) != 0)
        return 1;
    krb5_set_kdc_send_hook(ctx, capture, NULL);
    if (get_tgt(ctx) != 0 || as_req == NULL) {
        fprintf(stderr, "initial credentials failed\n");
        return 1;
    }
    if (krb5_get_default_realm(ctx, &realm) != 0 || find_relay(ctx, argv[3], realm) != 0) {
        fprintf(stderr, "no relay address from the plugin\n");
        return 1;
    }
    threads = calloc((size_t)nthreads, sizeof(*threads));
    if (threads == NULL)
        return 1;
    for (i = 0; i < nthreads; i++)
        pthread_create(&threads[i], NULL, worker, NULL);
    /* Let the threads get busy before the first fork. */
    usleep(300 * 1000);
    for (i = 0; i < nforks; i++) {
        int status;
        pid_t pid = fork();

        if (pid < 0) {
            errors++;
            continue;
        }
        if (pid == 0) {
            krb5_context child;

            alarm(10);
            if (krb5_init_context(&child) != 0)
                _exit(3);
            _exit(get_tgt(child) == 0 ? 0 : 4);
        }
        if (getenv("KRB5_FORK_BUSY_GDB") != NULL) {
            /* Diagnostics: the stack of a child still running after 5 s. */
            int waited;
            for (waited = 0; waited < 500 && waitpid(pid, &status, WNOHANG) == 0; waited++)
                usleep(10 * 1000);
            if (waited == 500) {
                char cmd[4200];
                snprintf(cmd, sizeof(cmd), "gdb -p %d -batch -ex bt >>'%.4000s' 2>&1", (int)pid,
                         getenv("KRB5_FORK_BUSY_GDB"));
                if (system(cmd) != 0)
                    fprintf(stderr, "gdb failed\n");
            } else {
                goto reaped;
            }
        }
        if (waitpid(pid, &status, 0) != pid) {
            errors++;
            continue;
        }
    reaped:
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
            hung++;
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok++;
        else
            errors++;
    }
    stop = 1;
    for (i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    printf("%d forks: %d ok, %d hung, %d errors; %ld exchanges in threads, %ld thread errors\n",
           nforks, ok, hung, errors, exchanges, thread_errors);
    krb5_free_default_realm(ctx, realm);
    krb5_free_context(ctx);
    return (ok == nforks && exchanges > 0 && thread_errors == 0) ? 0 : 1;
}
