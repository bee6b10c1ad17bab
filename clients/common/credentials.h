// Channel credentials shared by the clients (lora-cli, lora-bench): TLS
// when a CA bundle is given (mutual TLS with a client certificate and key),
// plaintext otherwise.
#pragma once

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>

namespace loraserve::clients {

struct TlsFiles {
  std::string ca;    // PEM CA bundle; empty: plaintext
  std::string cert;  // PEM client certificate (servers with --tls-client-ca)
  std::string key;   // PEM private key of `cert`
};

// nullptr with *error set when a file cannot be read or cert/key come alone.
std::shared_ptr<grpc::ChannelCredentials> channel_credentials(const TlsFiles& tls,
                                                              std::string* error);

}  // namespace loraserve::clients
