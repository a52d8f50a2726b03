"""The server's SSL context, built from `tls_server_config` and updated in place on reload.

The listening socket keeps the context it was started with, so a reload changes that same
object: a new certificate and key (checked on a scratch context first, so a broken pair never
replaces a working one), versions, ciphers and the client-certificate policy. New connections
get the new settings; open ones keep theirs. OpenSSL only adds CAs to a context: a client CA
removed from `client_ca_file` stays trusted until augur restarts.
"""

from __future__ import annotations

import ssl

from exporter.config.webfile import CIPHER_SUITES, TLS_VERSIONS, TLSServerConfig, check_key_pair

_VERIFY = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


def server_context(tls: TLSServerConfig) -> ssl.SSLContext:
    """A server context for `tls`; ValueError if its files no longer load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    apply(context, tls)
    return context


def _default_ciphers() -> str:
    # Python's own list for a new server context, so removing cipher_suites on reload restores it.
    return ":".join(c["name"] for c in ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).get_ciphers())


def apply(context: ssl.SSLContext, tls: TLSServerConfig) -> None:
    """Load `tls` into `context` for the connections to come; ValueError leaves it unchanged."""
    assert tls.cert_file is not None and tls.key_file is not None  # the model requires both
    check_key_pair(tls.cert_file, tls.key_file, "tls_server_config.")
    ciphers = ":".join(CIPHER_SUITES[name] for name in tls.cipher_suites)
    if ciphers:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(ciphers)  # refuses an empty set
    # From here on nothing is expected to fail: the files were just loaded on a scratch context.
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.client_ca_file is not None:
        context.load_verify_locations(cafile=str(tls.client_ca_file))
    context.verify_mode = _VERIFY[tls.client_auth_type]
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    context.set_ciphers(ciphers or _default_ciphers())
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
