"""The cluster's PKI on the operator's machine: a CA and per-node etcd certificates.

:mod:`core.pki.files` writes private files safely (0600 keys in 0700 dirs, O_EXCL temp files, never
following a symlink); :mod:`core.pki.certs` makes and checks EC P-256 certificates with the
``cryptography`` package; :mod:`core.pki.cluster` keeps one CA per inventory under the state dir,
reuses what is still good and renews only what is missing, expiring, or names an old address.
The CA key never leaves this machine: nodes get the CA certificate and their own leaf pairs only.
Imports nothing from the other rooms but :mod:`core.errors`, :mod:`core.model` and :mod:`core.paths`.
"""
