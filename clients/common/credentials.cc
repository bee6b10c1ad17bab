#include "clients/common/credentials.h"

#include <fstream>
#include <sstream>

namespace loraserve::clients {
namespace {

bool slurp(const std::string& path, std::string* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read " + path;
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

std::shared_ptr<grpc::ChannelCredentials> channel_credentials(const TlsFiles& tls,
                                                              std::string* error) {
  if (tls.cert.empty() != tls.key.empty()) {
    *error = "--tls-cert and --tls-key go together";
    return nullptr;
  }
  if (tls.ca.empty()) {
    if (!tls.cert.empty()) {
      *error = "--tls-cert needs --tls-ca (the CA that signed the server's certificate)";
      return nullptr;
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  if (!slurp(tls.ca, &ssl.pem_root_certs, error)) return nullptr;
  if (!tls.cert.empty() && (!slurp(tls.cert, &ssl.pem_cert_chain, error) ||
                            !slurp(tls.key, &ssl.pem_private_key, error))) {
    return nullptr;
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace loraserve::clients
