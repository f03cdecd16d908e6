// A small JAAS + GSS-API Kerberos client and acceptor, using nothing but
// the JDK's own Kerberos (sun.security.krb5): no libkrb5, no plugin.
//
//   java -Djava.security.krb5.conf=FILE -Djava.security.auth.login.config=JAAS \
//        KrbClient SERVICE            (the password is read from stdin)
//
// 1. Logs in with the JAAS entry "KrbClient" (Krb5LoginModule, the password
//    from a CallbackHandler, no ticket cache): an AS exchange with the KDC.
// 2. Establishes a GSS-API krb5 context (Oid 1.2.840.113554.1.2.2) with the
//    host-based SERVICE (e.g. host@localhost): the initiator's TGS exchange.
// 3. Accepts it in the same JVM as the service, logged in with the JAAS entry
//    "KrbAcceptor" (Krb5LoginModule with the service's keytab), and exchanges
//    one wrapped message each way.
//
// Prints "TGT ok: ...", "service ticket ok: ...", "context established: ..."
// and "wrap ok"; on any failure prints "FAILED: " with the exception and its
// causes, and exits 1.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.security.PrivilegedExceptionAction;
import java.util.Arrays;

import javax.security.auth.Subject;
import javax.security.auth.callback.Callback;
import javax.security.auth.callback.CallbackHandler;
import javax.security.auth.callback.NameCallback;
import javax.security.auth.callback.PasswordCallback;
import javax.security.auth.callback.UnsupportedCallbackException;
import javax.security.auth.kerberos.KerberosTicket;
import javax.security.auth.login.LoginContext;

import org.ietf.jgss.GSSContext;
import org.ietf.jgss.GSSCredential;
import org.ietf.jgss.GSSManager;
import org.ietf.jgss.GSSName;
import org.ietf.jgss.MessageProp;
import org.ietf.jgss.Oid;

public class KrbClient {
    static final Oid KRB5;

    static {
        try {
            KRB5 = new Oid("1.2.840.113554.1.2.2");
        } catch (Exception e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    public static void main(String[] args) {
        if (args.length != 1) {
            System.err.println("usage: KrbClient SERVICE@HOST  (password on stdin)");
            System.exit(2);
        }
        try {
            run(args[0]);
        } catch (Throwable e) {
            System.out.println("FAILED: " + describe(e));
            e.printStackTrace(System.out);
            System.exit(1);
        }
    }

    /** The exception and all its causes, on one line. */
    static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (sb.length() > 0) {
                sb.append(" <- ");
            }
            sb.append(t.getClass().getName()).append(": ").append(t.getMessage());
        }
        return sb.toString();
    }

    static void run(String service) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line = in.readLine();
        final char[] password = (line == null ? "" : line).toCharArray();

        // The password comes only from this callback (doNotPrompt=false).
        CallbackHandler passwordHandler = callbacks -> {
            for (Callback cb : callbacks) {
                if (cb instanceof PasswordCallback) {
                    ((PasswordCallback) cb).setPassword(password);
                } else if (cb instanceof NameCallback) {
                    NameCallback nc = (NameCallback) cb;
                    if (nc.getDefaultName() == null) {
                        throw new UnsupportedCallbackException(cb, "no principal in the JAAS config");
                    }
                    nc.setName(nc.getDefaultName());
                } else {
                    throw new UnsupportedCallbackException(cb);
                }
            }
        };

        // 1. AS exchange: the TGT.
        LoginContext clientLogin = new LoginContext("KrbClient", passwordHandler);
        clientLogin.login();
        Subject client = clientLogin.getSubject();
        KerberosTicket tgt = null;
        for (KerberosTicket t : client.getPrivateCredentials(KerberosTicket.class)) {
            if (t.getServer().getName().startsWith("krbtgt/")) {
                tgt = t;
            }
        }
        if (tgt == null) {
            throw new IllegalStateException("login succeeded but the Subject holds no TGT");
        }
        System.out.println("TGT ok: " + tgt.getClient().getName() + " for " + tgt.getServer().getName());
        Arrays.fill(password, '\0');

        // The acceptor's keytab login (no KDC exchange: an acceptor needs none).
        LoginContext serverLogin = new LoginContext("KrbAcceptor", callbacks -> {
            throw new UnsupportedCallbackException(callbacks[0], "the acceptor uses its keytab only");
        });
        serverLogin.login();
        Subject server = serverLogin.getSubject();

        GSSManager manager = GSSManager.getInstance();
        GSSName target = manager.createName(service, GSSName.NT_HOSTBASED_SERVICE);

        GSSContext initiator = Subject.doAs(client, (PrivilegedExceptionAction<GSSContext>) () -> {
            GSSContext c = manager.createContext(target.canonicalize(KRB5), KRB5, null, GSSContext.DEFAULT_LIFETIME);
            c.requestMutualAuth(true);
            c.requestConf(true);
            c.requestInteg(true);
            return c;
        });
        GSSContext acceptor = Subject.doAs(server, (PrivilegedExceptionAction<GSSContext>) () -> {
            GSSCredential cred = manager.createCredential(null, GSSCredential.INDEFINITE_LIFETIME, KRB5,
                    GSSCredential.ACCEPT_ONLY);
            return manager.createContext(cred);
        });

        // 2. and 3. The token loop; the first initSecContext makes the TGS exchange.
        byte[] token = new byte[0];
        for (int round = 0; round < 10 && !(initiator.isEstablished() && acceptor.isEstablished()); round++) {
            if (!initiator.isEstablished()) {
                final byte[] in1 = token;
                token = Subject.doAs(client, (PrivilegedExceptionAction<byte[]>) () ->
                        initiator.initSecContext(in1, 0, in1.length));
                if (round == 0) {
                    for (KerberosTicket t : client.getPrivateCredentials(KerberosTicket.class)) {
                        if (!t.getServer().getName().startsWith("krbtgt/")) {
                            System.out.println("service ticket ok: " + t.getClient().getName() + " for "
                                    + t.getServer().getName());
                        }
                    }
                }
            }
            if (token != null && token.length > 0 && !acceptor.isEstablished()) {
                final byte[] in2 = token;
                token = Subject.doAs(server, (PrivilegedExceptionAction<byte[]>) () ->
                        acceptor.acceptSecContext(in2, 0, in2.length));
            }
            if (token == null) {
                token = new byte[0];
            }
        }
        if (!initiator.isEstablished() || !acceptor.isEstablished()) {
            throw new IllegalStateException("the context was not established after 10 rounds");
        }
        System.out.println("context established: client " + acceptor.getSrcName() + " server "
                + initiator.getTargName() + " mutual " + initiator.getMutualAuthState());

        byte[] msg = "hello from the JDK".getBytes(StandardCharsets.UTF_8);
        byte[] wrapped = initiator.wrap(msg, 0, msg.length, new MessageProp(0, true));
        byte[] plain = acceptor.unwrap(wrapped, 0, wrapped.length, new MessageProp(0, true));
        byte[] back = acceptor.wrap(plain, 0, plain.length, new MessageProp(0, true));
        byte[] plain2 = initiator.unwrap(back, 0, back.length, new MessageProp(0, true));
        if (!Arrays.equals(msg, plain2)) {
            throw new IllegalStateException("wrap/unwrap round trip changed the message");
        }
        System.out.println("wrap ok");
        initiator.dispose();
        acceptor.dispose();
        clientLogin.logout();
        serverLogin.logout();
    }
}
