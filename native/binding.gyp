{
  "variables": {
    # glibc_compat.cc pins x86_64 glibc symbol versions; a musl or other-arch build does without.
    "glibc_pin%": "<!(node -p \"process.arch === 'x64' && process.report.getReport().header.glibcVersionRuntime ? 1 : 0\")"
  },
  "targets": [
    {
      "target_name": "warden",
      "sources": [
        "addon.cc",
        "cgroup_events.cc",
        "channel.cc",
        "channel_binding.cc",
        "channel_frame.cc",
        "channel_schedule.cc",
        "channel_send_queue.cc",
        "malloc_tuning.cc",
        "runner_scheduling.cc",
        "launcher_binding.cc",
        "launcher.cc",
        "launch_clone.cc",
        "launch_modes.cc",
        "launch_release.cc",
        "launch_thread.cc",
        "child.cc",
        "mount_child.cc",
        "mount_parent.cc",
        "mount_resolve.cc",
        "mount_set.cc",
        "mount_spares.cc",
        "mount_template.cc",
        "exit_watch.cc",
        "js_callback.cc",
        "net_intercept.cc",
        "net_fast.cc",
        "net_socket.cc",
        "net_diag.cc",
        "net_closes.cc",
        "file_lock.cc",
        "probe.cc",
        "seccomp.cc",
        "seccomp_binding.cc",
        "spawn_trace.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      # NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS: an error node-addon-api cannot throw because the
      # environment is stopping (a worker thread ending) is dropped instead of aborting the process.
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++1y", "-std=gnu++17"],
      "cflags": [
        "-fvisibility=hidden",
        "-ffile-prefix-map=<!(node -p \"require('path').resolve('..')\")=.",
        "-fno-ident"
      ],
      "cflags_cc": ["-std=c++17", "-fno-exceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"],
      "ldflags": [
        "-static-libstdc++", "-static-libgcc", "-Wl,--exclude-libs,ALL", "-Wl,--gc-sections",
        "-Wl,--build-id=none", "-Wl,--hash-style=gnu", "-Wl,-z,relro,-z,now",
        "-Wl,--version-script=<(module_root_dir)/exports.map"
      ],
      "conditions": [
        ["OS=='linux' and target_arch=='x64' and glibc_pin==1", {
          "sources": ["glibc_compat.cc"],
          "ldflags": [
            "-Wl,--wrap=stat64,--wrap=stat,--wrap=fstat64,--wrap=fstat,--wrap=lstat64,--wrap=lstat",
            "-Wl,--wrap=fstatat64,--wrap=fstatat,--wrap=pthread_sigmask,--wrap=pthread_once",
            "-Wl,--wrap=__pthread_key_create,--wrap=__libc_single_threaded,--wrap=_dl_find_object",
            "-Wl,--wrap=arc4random"
          ]
        }]
      ]
    }
  ]
}
