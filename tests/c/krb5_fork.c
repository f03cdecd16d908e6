/*
 * krb5_fork: gets initial credentials (so the plugin's relay, threads and
 * pooled connection exist in this process), forks, and has the child get
 * credentials again, with the parent's context and with a new one; then
 * the parent gets them once more. Exits non-zero if any step fails.
 *
 *   usage: krb5_fork PRINCIPAL PASSWORD
 */
#include <krb5.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int
get_creds(krb5_context ctx, const char *who, const char *princ_name, const char *password)
{
    krb5_principal princ;
    krb5_creds creds;
    krb5_error_code ret;

    krb5_parse_name(ctx, princ_name, &princ);
    memset(&creds, 0, sizeof(creds));
    ret = krb5_get_init_creds_password(ctx, &creds, princ, password, NULL, NULL, 0, NULL, NULL);
    if (ret) {
        const char *m = krb5_get_error_message(ctx, ret);
        printf("%s: error: %s\n", who, m);
        krb5_free_error_message(ctx, m);
    } else {
        printf("%s: ok\n", who);
        krb5_free_cred_contents(ctx, &creds);
    }
    fflush(stdout);
    krb5_free_principal(ctx, princ);
    return ret ? 1 : 0;
}

int
main(int argc, char **argv)
{
    krb5_context ctx, ctx2;
    int status, failures = 0;
    pid_t pid;

    if (argc != 3)
        return 2;
    krb5_init_context(&ctx);
    failures += get_creds(ctx, "parent before fork", argv[1], argv[2]);
    pid = fork();
    if (pid == 0) {
        failures += get_creds(ctx, "child, inherited context", argv[1], argv[2]);
        krb5_init_context(&ctx2);
        failures += get_creds(ctx2, "child, new context", argv[1], argv[2]);
        krb5_free_context(ctx2);
        _exit(failures ? 1 : 0);
    }
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        failures++;
    failures += get_creds(ctx, "parent after fork", argv[1], argv[2]);
    krb5_free_context(ctx);
    return failures ? 1 : 0;
}
