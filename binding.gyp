{
  "targets": [
    {
      "target_name": "warden",
      "sources": [
        "native/addon.cc",
        "native/cgroup_events.cc",
        "native/channel.cc",
        "native/channel_binding.cc",
        "native/channel_frame.cc",
        "native/launcher_binding.cc",
        "native/launcher.cc",
        "native/child.cc",
        "native/mounts.cc",
        "native/exit_watch.cc",
        "native/net_intercept.cc",
        "native/net_diag.cc",
        "native/file_lock.cc",
        "native/probe.cc",
        "native/seccomp.cc",
        "native/seccomp_binding.cc",
        "native/spawn_trace.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++1y", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fno-exceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"]
    }
  ]
}
