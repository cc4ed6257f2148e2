// The parsing shared by the socket dumps (net_diag.cc) and the destroy notifications
// (net_closes.cc); net_closes.cc includes libuv, whose <netinet/tcp.h> clashes with <linux/tcp.h>.
#pragma once

#include <linux/netlink.h>
#include <napi.h>

#include <cstdint>

namespace warden {

struct Found {
  double cookie;
  int state;
  double sent, received;  // -1 when the message carries no tcp_info
};

// One SOCK_DIAG_BY_FAMILY message (an inet_diag_msg and its attributes).
Found ParseDiag(const nlmsghdr* h);

void InitNetCloses(Napi::Env env, Napi::Object exports);

}  // namespace warden
