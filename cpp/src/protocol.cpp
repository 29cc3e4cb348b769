// The parts of the wire protocol that need no connection: addresses, the server's error text.
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "simvos/client.hpp"

namespace simvos {

namespace {

constexpr std::string_view kErrorMarker = "simvos-serve error: ";  // protocol.ERROR_MARKER
constexpr const char* kDefaultPort = "8001";
constexpr int kMaxPort = 65535;
constexpr std::size_t kMaxPortDigits = 5;  // also keeps std::stoi from overflowing
constexpr const char* kWhiteSpace = " \t\r\n";

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(kWhiteSpace);
  if (first == std::string::npos) return {};
  return text.substr(first, text.find_last_not_of(kWhiteSpace) - first + 1);
}

InputError bad_address(const std::string& text, const std::string& why) {
  return InputError("server '" + text + "': " + why + "; expected HOST:PORT (simvos-serve's gRPC port, default " +
                    kDefaultPort + ", an IPv6 address in brackets: [::1]:8001)");
}

bool valid_port(const std::string& port) {
  if (port.empty() || port.size() > kMaxPortDigits) return false;
  for (const char c : port)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  const int value = std::stoi(port);
  return value > 0 && value <= kMaxPort;
}

}  // namespace

ServeError::ServeError(const std::string& server, const std::string& what, std::string server_message)
    : Error(what), server_(server), server_message_(std::move(server_message)) {}

std::string grpc_address(const std::string& text) {
  if (trim(text).empty()) throw bad_address(text, "empty");
  for (const char c : text)
    if (std::isspace(static_cast<unsigned char>(c)) || !std::isprint(static_cast<unsigned char>(c)))
      throw bad_address(text, "contains a space or a control character");
  std::string host = text, port;
  if (text.front() == '[') {  // [IPv6] or [IPv6]:PORT
    const auto close = text.find(']');
    if (close == std::string::npos || close == 1) throw bad_address(text, "an unclosed or empty [IPv6] host");
    host = text.substr(0, close + 1);
    const std::string rest = text.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') throw bad_address(text, "text after the [IPv6] host");
    port = rest.empty() ? kDefaultPort : rest.substr(1);
  } else if (const auto colon = text.rfind(':'); colon != std::string::npos) {
    if (text.find(':') != colon) throw bad_address(text, "an IPv6 address goes in brackets");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  } else {
    port = kDefaultPort;
  }
  if (host.empty()) throw bad_address(text, "no host");
  if (!valid_port(port)) throw bad_address(text, "the port '" + port + "' is not in 1.." + std::to_string(kMaxPort));
  return host + ":" + port;
}

std::vector<std::string> parse_servers(const std::string& list) {
  std::vector<std::string> servers;
  std::string::size_type begin = 0;
  while (true) {
    const auto comma = list.find(',', begin);
    const std::string entry = list.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin);
    if (entry.empty())
      throw InputError("servers '" + list + "': an empty entry; give HOST:PORT[,HOST:PORT...] (gRPC ports)");
    servers.push_back(grpc_address(entry));
    if (comma == std::string::npos) return servers;
    begin = comma + 1;
  }
}

std::string server_message(const std::string& triton_message) {
  const auto at = triton_message.rfind(kErrorMarker);
  if (at == std::string::npos) return {};
  const std::string rest = triton_message.substr(at + kErrorMarker.size());
  return trim(rest.substr(0, rest.find('\n')));
}

}  // namespace simvos
