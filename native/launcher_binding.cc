// Bindings of the launcher: the plan conversion, MountSet, SandboxProcess, pipe(), and the table of
// setup stages.
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bindings.h"
#include "exit_watch.h"
#include "launch_options.h"
#include "mounts.h"

namespace warden {

namespace {

constexpr size_t kMaxFds = 256;  // matches the child's fixed array

bool GetStrings(Napi::Object o, const char* key, std::vector<std::string>* out, std::string* err) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) {
    *err = std::string(key) + " must be an array of strings";
    return false;
  }
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value s = a.Get(i);
    if (!s.IsString()) {
      *err = std::string(key) + "[" + std::to_string(i) + "] must be a string";
      return false;
    }
    std::string str = s.As<Napi::String>().Utf8Value();
    if (str.find('\0') != std::string::npos) {
      *err = std::string(key) + "[" + std::to_string(i) + "] contains a NUL byte";
      return false;
    }
    out->push_back(std::move(str));
  }
  return true;
}

bool GetBool(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

int64_t GetInt(Napi::Object o, const char* key, int64_t fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : fallback;
}

std::string GetString(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

uint64_t RlimitValue(Napi::Value v) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d < 0 || d >= 18446744073709551615.0) return ~0ull;  // Infinity → RLIM_INFINITY
    return static_cast<uint64_t>(d);
  }
  return ~0ull;
}

void PointAt(std::vector<std::string>& storage, std::vector<char*>* out) {
  out->clear();
  for (std::string& s : storage) out->push_back(s.data());
  out->push_back(nullptr);
}

// new MountSet(mounts): the caller's mount list, turned into ops (and, where possible, a template
// root) once, for any number of spawns. Throws a TypeError naming the bad entry.
class MountSetWrap : public Napi::ObjectWrap<MountSetWrap> {
 public:
  // Marks MountSet objects, so that a plan cannot pass any other wrapped object in their place
  // (works across worker threads, unlike a per-environment constructor reference).
  static constexpr napi_type_tag kTag = {0x77617264656e4d53ull, 0x6f756e7453657431ull};

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "MountSet", {
        InstanceAccessor("template", &MountSetWrap::GetTemplate, nullptr),
        InstanceAccessor("templateNamespace", &MountSetWrap::GetTemplateNamespace, nullptr),
        InstanceAccessor("noTemplateReason", &MountSetWrap::GetNoTemplateReason, nullptr),
        InstanceMethod("close", &MountSetWrap::Close),
    });
  }

  explicit MountSetWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MountSetWrap>(info) {
    Napi::Env env = info.Env();
    std::vector<MountSpec> specs;
    std::string err = info.Length() > 0 ? SpecsFromJs(info[0], &specs) : "MountSet(mounts)";
    if (err.empty()) {
      set_ = std::make_shared<MountSet>();
      // MountSet(mounts, { template: false }): the per-spawn way, as on kernels without proc's pidns=.
      bool allow_template = true;
      if (info.Length() > 1 && info[1].IsObject()) {
        Napi::Value v = info[1].As<Napi::Object>().Get("template");
        allow_template = !v.IsBoolean() || v.As<Napi::Boolean>().Value();
      }
      err = set_->Build(specs, allow_template);
    }
    if (!err.empty()) {
      Napi::Error e = Napi::TypeError::New(env, err);
      e.Set("code", Napi::String::New(env, "ERR_INVALID_OPTION"));
      e.ThrowAsJavaScriptException();
      return;
    }
    info.This().As<Napi::Object>().TypeTag(&kTag);
  }

  // Null once closed.
  const std::shared_ptr<MountSet>& set() const { return set_; }

 private:
  // close(): drops this object's hold on the set. Its fds (template tree and namespace) are closed
  // once no sandbox launched from it still holds its plan, not at some later garbage collection: a
  // host that shuts down must leave no fd behind.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    set_.reset();
    return info.Env().Undefined();
  }

  Napi::Value GetTemplate(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), set_ != nullptr && set_->template_fd() >= 0);
  }
  Napi::Value GetTemplateNamespace(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), set_ != nullptr && set_->namespace_fd() >= 0);
  }
  Napi::Value GetNoTemplateReason(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), set_ == nullptr ? "" : set_->no_template_reason());
  }

  static std::string SpecsFromJs(Napi::Value mv, std::vector<MountSpec>* specs) {
    if (!mv.IsArray()) return "mounts must be an array";
    Napi::Array ma = mv.As<Napi::Array>();
    for (uint32_t i = 0; i < ma.Length(); i++) {
      if (!ma.Get(i).IsObject()) return "mounts[" + std::to_string(i) + "] must be an object";
      Napi::Object m = ma.Get(i).As<Napi::Object>();
      MountSpec s;
      std::string kind = GetString(m, "kind");
      if (kind == "bind") s.kind = MountSpec::Kind::kBind;
      else if (kind == "tmpfs") s.kind = MountSpec::Kind::kTmpfs;
      else if (kind == "proc") s.kind = MountSpec::Kind::kProc;
      else if (kind == "symlink") s.kind = MountSpec::Kind::kSymlink;
      else if (kind == "dir") s.kind = MountSpec::Kind::kDir;
      else return "mounts[" + std::to_string(i) + "].kind '" + kind + "' is unknown";
      s.source = GetString(m, "source");
      s.target = GetString(m, "target");
      s.writable = GetBool(m, "writable");
      s.device = GetBool(m, "device");
      s.host_access = GetBool(m, "hostAccess");
      s.options = GetString(m, "options");
      s.mode = static_cast<uint32_t>(GetInt(m, "mode", 0755));
      specs->push_back(std::move(s));
    }
    return "";
  }

  std::shared_ptr<MountSet> set_;
};

}  // namespace

std::string LaunchPlanFromJs(Napi::Object js, LaunchPlan* plan) {
  std::string err;
  if (!GetStrings(js, "candidates", &plan->exec_candidates_storage, &err)) return err;
  if (plan->exec_candidates_storage.empty()) return "candidates must not be empty";
  for (std::string& s : plan->exec_candidates_storage) plan->exec_candidates.push_back(s.c_str());
  if (!GetStrings(js, "argv", &plan->argv_storage, &err)) return err;
  if (!GetStrings(js, "envp", &plan->envp_storage, &err)) return err;
  PointAt(plan->argv_storage, &plan->argv);
  PointAt(plan->envp_storage, &plan->envp);
  plan->cwd = GetString(js, "cwd");
  if (plan->cwd.empty()) plan->cwd = "/";
  plan->hostname = GetString(js, "hostname");

  Napi::Value nsv = js.Get("namespaces");
  if (!nsv.IsObject()) return "namespaces must be an object";
  Napi::Object ns = nsv.As<Napi::Object>();
  int flags = 0;
  if (GetBool(ns, "user")) flags |= CLONE_NEWUSER;
  if (GetBool(ns, "pid")) flags |= CLONE_NEWPID;
  if (GetBool(ns, "mount")) flags |= CLONE_NEWNS;
  if (GetBool(ns, "net")) flags |= CLONE_NEWNET;
  if (GetBool(ns, "ipc")) flags |= CLONE_NEWIPC;
  if (GetBool(ns, "uts")) flags |= CLONE_NEWUTS;
  // The cgroup namespace is unshared by the child once the parent has placed it in its cgroup, so
  // that the namespace's root is the sandbox's own cgroup, not the host's.
  plan->cgroup_ns = GetBool(ns, "cgroup");
  plan->clone_flags = flags;
  plan->user_ns = flags & CLONE_NEWUSER;
  plan->mount_ns = flags & CLONE_NEWNS;
  plan->uts_ns = flags & CLONE_NEWUTS;

  plan->map_uid_inside = static_cast<uid_t>(GetInt(js, "mapUidInside", 0));
  plan->map_uid_outside = static_cast<uid_t>(GetInt(js, "mapUidOutside", 0));
  plan->map_gid_inside = static_cast<gid_t>(GetInt(js, "mapGidInside", 0));
  plan->map_gid_outside = static_cast<gid_t>(GetInt(js, "mapGidOutside", 0));
  plan->deny_setgroups = GetBool(js, "denySetgroups");
  plan->own_user_ns = plan->user_ns && GetBool(js, "ownUserNamespace");
  plan->drop_supplementary_groups = GetBool(js, "dropGroups");
  plan->uid = static_cast<uid_t>(GetInt(js, "uid", 65534));
  plan->gid = static_cast<gid_t>(GetInt(js, "gid", 65534));
  plan->last_cap = static_cast<int>(GetInt(js, "lastCap", 40));
  plan->timeout_ms = static_cast<int>(GetInt(js, "setupTimeoutMs", 10000));
  std::string base = GetString(js, "rootBase");
  if (!base.empty()) plan->root_base = base;

  Napi::Value mv = js.Get("mountSet");
  if (!mv.IsUndefined() && !mv.IsNull()) {
    if (!mv.IsObject() || !mv.As<Napi::Object>().CheckTypeTag(&MountSetWrap::kTag)) {
      return "mountSet must be a MountSet";
    }
    if (!plan->mount_ns) return "mounts need the mount namespace";
    plan->mount_set = MountSetWrap::Unwrap(mv.As<Napi::Object>())->set();
    if (plan->mount_set == nullptr) return "mountSet is closed";
    // Its ops, template and namespace are read on the launch thread, when the launch starts
    // (TakeMountSetState): an earlier launch may still drop its template there.
  }
  if (plan->mount_ns && plan->mount_set == nullptr) plan->root_options = FreshRootOptions(plan->uid, plan->gid);

  Napi::Value rv = js.Get("rlimits");
  if (rv.IsArray()) {
    Napi::Array ra = rv.As<Napi::Array>();
    for (uint32_t i = 0; i < ra.Length(); i++) {
      Napi::Object r = ra.Get(i).As<Napi::Object>();
      plan->rlimits.push_back({static_cast<int>(GetInt(r, "resource", -1)), RlimitValue(r.Get("soft")),
                               RlimitValue(r.Get("hard"))});
    }
  }

  Napi::Value fv = js.Get("fds");
  if (!fv.IsArray()) return "fds must be an array";
  Napi::Array fa = fv.As<Napi::Array>();
  if (fa.Length() > kMaxFds) return "fds: at most " + std::to_string(kMaxFds) + " descriptors";
  for (uint32_t i = 0; i < fa.Length(); i++) {
    Napi::Object f = fa.Get(i).As<Napi::Object>();
    int source = static_cast<int>(GetInt(f, "source", -2));
    int target = static_cast<int>(GetInt(f, "target", -1));
    if (source < FdMapping::kDevNull || target < 0 || target > 1 << 20) {
      return "fds[" + std::to_string(i) + "] needs a source (an fd, or -1 for /dev/null) and a target fd";
    }
    if (source != FdMapping::kDevNull && fcntl(source, F_GETFD) < 0) {
      return "fds[" + std::to_string(i) + "].source " + std::to_string(source) + " is not open";
    }
    plan->fds.push_back({source, target});
  }

  Napi::Value sv = js.Get("seccomp");
  if (sv.IsBuffer()) {
    Napi::Buffer<uint8_t> b = sv.As<Napi::Buffer<uint8_t>>();
    if (b.Length() == 0 || b.Length() % sizeof(sock_filter) != 0 ||
        b.Length() / sizeof(sock_filter) > BPF_MAXINSNS) {
      return "seccomp must be a compiled program (a whole number of sock_filter, at most 4096)";
    }
    plan->seccomp.resize(b.Length() / sizeof(sock_filter));
    memcpy(plan->seccomp.data(), b.Data(), b.Length());
    // The launcher must install with a listener exactly when some path returns USER_NOTIF.
    for (const sock_filter& ins : plan->seccomp) {
      if (ins.code == (BPF_RET | BPF_K) && (ins.k & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_USER_NOTIF) {
        plan->seccomp_listener = true;
      }
    }
  }

  if (js.Get("cgroupTasks").IsArray()) {
    if (!GetStrings(js, "cgroupTasks", &plan->cgroup_tasks, &err)) return err;
    if (plan->cgroup_tasks.size() > static_cast<size_t>(kMaxCgroupTasks)) {
      return "cgroupTasks: at most " + std::to_string(kMaxCgroupTasks) + " cgroup v1 tasks files";
    }
  }
  plan->cgroup_dir = GetString(js, "cgroupDir");
  return "";
}

namespace {

// pipe() → [readFd, writeFd], both close-on-exec: the launcher dups the sandbox's end into place.
Napi::Value Pipe(const Napi::CallbackInfo& info) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    Napi::Error e = Napi::Error::New(info.Env(), std::string("pipe2: ") + strerror(errno));
    e.Set("errno", Napi::Number::New(info.Env(), errno));
    e.ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::Array a = Napi::Array::New(info.Env(), 2);
  a.Set(0u, Napi::Number::New(info.Env(), fds[0]));
  a.Set(1u, Napi::Number::New(info.Env(), fds[1]));
  return a;
}

// closePipe(fd): closes an fd pipe() made. Not fs.closeSync: in a worker thread Node warns about
// closing an fd its fs did not open.
Napi::Value ClosePipe(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 0) {
    Napi::TypeError::New(info.Env(), "closePipe(fd)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

}  // namespace

void InitLauncher(Napi::Env env, Napi::Object exports) {
  exports.Set("SandboxProcess", SandboxProcess::Define(env));
  exports.Set("pipe", Napi::Function::New(env, Pipe));
  exports.Set("closePipe", Napi::Function::New(env, ClosePipe));
  exports.Set("MountSet", MountSetWrap::Define(env));
  // The table of setup stages (stages.h), for lib/sandbox/errors.ts to hold a hint for each.
  Napi::Array stages = Napi::Array::New(env);
  for (const char* name : kSetupStageNames) stages.Set(stages.Length(), Napi::String::New(env, name));
  exports.Set("setupStages", stages);
}

}  // namespace warden
