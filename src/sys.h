/* Headers bindgen reads (see build.rs). locate_plugin.h uses struct
 * sockaddr without including <sys/socket.h>, so that comes first. */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/nameser.h>
#include <resolv.h>
#include <krb5/krb5.h>
#include <profile.h>
#include <krb5/locate_plugin.h>
