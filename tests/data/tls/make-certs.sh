#!/bin/sh
# Made the test certificates of tests/common/net/tls_client_test.cpp (run once; the outputs are
# committed): a CA, a server certificate it signed for IP 127.0.0.1 and DNS name localhost, and a
# second, unrelated CA. All valid 100 years (36500 days). Run from this directory.
set -eu
days=36500
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days "$days" \
  -subj "/CN=director test CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.crt -days "$days" \
  -subj "/CN=director unrelated test CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -new -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
  "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days "$days" \
  -extfile server.ext
rm server.csr server.ext ca.srl ca.key other-ca.key  # the CAs sign nothing more
