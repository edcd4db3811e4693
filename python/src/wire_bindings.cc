// Envelope and Result frames for Python: meta from a dict, tensors described
// by (key, index, dtype, shape, strides, data pointer, bytes). Preflight runs
// every check before a frame exists (a failure strands nobody); decode
// validates header, checksums, schema and manifest.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "bindings.h"
#include "lockstep/digest.h"
#include "lockstep/envelope.h"
#include "lockstep/error.h"
#include "lockstep/result.h"

namespace py = pybind11;

namespace lockstep::python {
namespace {

// (key, index, dtype value, shape, strides in elements, data pointer, bytes)
using TensorTuple = std::tuple<std::string, std::uint32_t, int, std::vector<std::int64_t>,
                               std::vector<std::int64_t>, std::uintptr_t, std::uint64_t>;

std::string type_name(const py::handle& value) { return py::str(py::type::of(value).attr("__name__")); }

bool looks_like_tensor(const py::handle& value) {
  return py::hasattr(value, "__array_interface__") || py::hasattr(value, "__cuda_array_interface__") ||
         py::hasattr(value, "data_ptr") || py::hasattr(value, "__array__");
}

[[noreturn]] void reject_value(const std::string& key, const py::handle& value) {
  if (looks_like_tensor(value)) {
    throw Error(ErrorCode::kSchema, "meta '" + key + "' holds a tensor (" + type_name(value) +
                                        "); tensors travel in the manifest, never inside meta");
  }
  throw Error(ErrorCode::kEncode, "meta '" + key + "' has a value of type " + type_name(value) +
                                      " that cannot be encoded (int, float, bool, str or a list of one of those)");
}

std::int64_t to_int64(const std::string& key, const py::handle& value) {
  try {
    return value.cast<std::int64_t>();
  } catch (const py::cast_error&) {
    throw Error(ErrorCode::kEncode, "meta '" + key + "' integer does not fit in 64 bits");
  }
}

MetaValue list_value(const std::string& key, const py::sequence& items) {
  if (items.size() == 0) return std::vector<std::int64_t>{};
  const py::handle first = items[0];
  auto same_type = [&](auto check) {
    for (const py::handle item : items) {
      if (!check(item)) {
        throw Error(ErrorCode::kEncode, "meta '" + key + "' list mixes " + type_name(first) + " and " +
                                            type_name(item) + " items (lists hold one type)");
      }
    }
  };
  if (py::isinstance<py::bool_>(first)) {
    same_type([](py::handle item) { return py::isinstance<py::bool_>(item); });
    std::vector<bool> out;
    for (const py::handle item : items) out.push_back(item.cast<bool>());
    return out;
  }
  if (py::isinstance<py::int_>(first)) {
    same_type([](py::handle item) { return py::isinstance<py::int_>(item) && !py::isinstance<py::bool_>(item); });
    std::vector<std::int64_t> out;
    for (const py::handle item : items) out.push_back(to_int64(key, item));
    return out;
  }
  if (py::isinstance<py::float_>(first)) {
    same_type([](py::handle item) { return py::isinstance<py::float_>(item); });
    std::vector<double> out;
    for (const py::handle item : items) out.push_back(item.cast<double>());
    return out;
  }
  if (py::isinstance<py::str>(first)) {
    same_type([](py::handle item) { return py::isinstance<py::str>(item); });
    std::vector<std::string> out;
    for (const py::handle item : items) out.push_back(item.cast<std::string>());
    return out;
  }
  reject_value(key + "[0]", first);
}

Meta meta_from(const py::dict& meta) {
  Meta out;
  out.reserve(meta.size());
  for (const auto& [key_handle, value] : meta) {
    if (!py::isinstance<py::str>(key_handle)) {
      throw Error(ErrorCode::kEncode, "meta key of type " + type_name(key_handle) + " (keys are str)");
    }
    const std::string key = key_handle.cast<std::string>();
    if (py::isinstance<py::bool_>(value)) {
      out.set(key, value.cast<bool>());
    } else if (py::isinstance<py::int_>(value)) {
      out.set(key, to_int64(key, value));
    } else if (py::isinstance<py::float_>(value)) {
      out.set(key, value.cast<double>());
    } else if (py::isinstance<py::str>(value)) {
      out.set(key, value.cast<std::string>());
    } else if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
      out.set(key, list_value(key, value.cast<py::sequence>()));
    } else {
      reject_value(key, value);
    }
  }
  return out;
}

py::dict meta_to(const Meta& meta) {
  py::dict out;
  for (const auto& [key, value] : meta.entries()) {
    std::visit([&](const auto& v) { out[py::str(key)] = py::cast(v); }, value);
  }
  return out;
}

Action action_from(const std::string& name) {
  for (const Action action : {Action::kNoop, Action::kInfer, Action::kShutdown, Action::kError}) {
    if (action_name(action) == name) return action;
  }
  throw Error(ErrorCode::kSchema, "unknown action '" + name + "' (NOOP, INFER, SHUTDOWN, ERROR)");
}

std::vector<TensorView> views_from(const std::vector<TensorTuple>& tensors) {
  std::vector<TensorView> views;
  views.reserve(tensors.size());
  for (const auto& [key, index, dtype, shape, strides, data, bytes] : tensors) {
    TensorView view;
    view.key = key;
    view.index = index;
    const auto parsed = dtype_from_wire(static_cast<std::uint8_t>(dtype));
    if (dtype < 0 || dtype > 255 || !parsed) {
      throw Error(ErrorCode::kEncode, tensor_label(key, index) + " has a dtype lockstep does not carry");
    }
    view.dtype = *parsed;
    for (const std::int64_t d : shape) view.shape.push_back(d);
    for (const std::int64_t s : strides) view.strides_elements.push_back(s);
    // Only the size is used here; the bytes follow over the backend.
    view.data = {reinterpret_cast<const std::uint8_t*>(data), static_cast<std::size_t>(bytes)};
    views.push_back(view);
  }
  return views;
}

py::list manifest_to(const TensorManifest& manifest) {
  py::list out;
  for (const TensorSpec& spec : manifest) {
    std::vector<std::int64_t> shape(spec.shape.dims().begin(), spec.shape.dims().end());
    out.append(py::make_tuple(spec.key, spec.index, static_cast<int>(spec.dtype), shape, spec.size_bytes));
  }
  return out;
}

FrameContext context_from(const py::dict& spec) {
  FrameContext context;
  context.version = spec["version"].cast<ProtocolVersion>();
  context.sender_rank = spec["sender_rank"].cast<std::int32_t>();
  context.job_token_digest = spec["token_digest"].cast<std::uint64_t>();
  return context;
}

CallIds ids_from(const py::dict& spec) {
  return CallIds{spec["call_id"].cast<std::uint64_t>(), spec["chunk_index"].cast<std::uint64_t>(),
                 spec["cache_epoch"].cast<std::uint64_t>()};
}

Geometry geometry_from(const py::dict& spec) {
  const auto [frames, tokens, dim] = spec["geometry"].cast<std::tuple<std::uint32_t, std::uint32_t, std::uint32_t>>();
  return Geometry{frames, tokens, dim};
}

py::bytes frame_bytes(std::span<const std::uint8_t> frame) {
  return py::bytes(reinterpret_cast<const char*>(frame.data()), frame.size());
}

std::span<const std::uint8_t> span_of(const py::buffer_info& info) {
  return {static_cast<const std::uint8_t*>(info.ptr), static_cast<std::size_t>(info.size * info.itemsize)};
}

void put_common(py::dict& out, const FrameHeader& header, const CallIds& ids, const Geometry& geometry,
                const TensorManifest& manifest) {
  out["version"] = header.version;
  out["sender_rank"] = header.sender_rank;
  out["body_checksum"] = header.body_checksum;
  out["call_id"] = ids.call_id;
  out["chunk_index"] = ids.chunk_index;
  out["cache_epoch"] = ids.cache_epoch;
  out["geometry"] = py::make_tuple(geometry.frames, geometry.tokens_per_frame, geometry.dim);
  out["manifest"] = manifest_to(manifest);
}

}  // namespace

void bind_wire(py::module_& m) {
  m.def("job_token_digest", [](const std::string& job_token, std::uint32_t generation) {
    return job_token_digest(job_token, generation);
  });
  m.attr("PROTOCOL_VERSION_MAX") = kProtocolVersionMax;
  py::dict dtypes;
  for (std::uint8_t value = 1; value <= kDTypeMaxValue; ++value) {
    dtypes[py::str(std::string(dtype_name(static_cast<DType>(value))))] = value;
  }
  m.attr("DTYPES") = dtypes;

  m.def("encode_envelope", [](const py::dict& spec, const std::vector<TensorTuple>& tensors) {
    Envelope envelope;
    envelope.action = action_from(spec["action"].cast<std::string>());
    envelope.ids = ids_from(spec);
    envelope.geometry = geometry_from(spec);
    envelope.meta = meta_from(spec["meta"].cast<py::dict>());
    envelope.error_reason = spec["error_reason"].cast<std::string>();
    if (!spec["plan"].is_none()) {
      const py::dict plan = spec["plan"].cast<py::dict>();
      Plan p;
      p.plan_id = plan["plan_id"].cast<std::uint64_t>();
      p.num_denoise_steps = plan["num_denoise_steps"].cast<std::uint32_t>();
      p.timesteps = plan["timesteps"].cast<std::vector<double>>();
      p.do_kv_recompute = plan["do_kv_recompute"].cast<bool>();
      p.init_cache = plan["init_cache"].cast<bool>();
      p.attention_bias = plan["attention_bias"].cast<double>();
      p.expected_generator_calls = plan["expected_generator_calls"].cast<std::uint32_t>();
      envelope.plan = std::move(p);
    }
    const std::vector<TensorView> views = views_from(tensors);
    const PreparedEnvelope prepared = preflight_envelope(envelope, views, context_from(spec));
    return frame_bytes(prepared.frame());
  });

  m.def("decode_envelope", [](const py::buffer& frame, std::uint64_t token_digest, int version) {
    const py::buffer_info info = frame.request();
    const DecodedEnvelope decoded = decode_envelope(
        span_of(info), FrameExpectations{token_digest, static_cast<ProtocolVersion>(version)});
    const Envelope& e = decoded.envelope;
    py::dict out;
    out["action"] = std::string(action_name(e.action));
    put_common(out, decoded.header, e.ids, e.geometry, decoded.manifest);
    out["meta"] = meta_to(e.meta);
    out["error_reason"] = e.error_reason;
    if (e.plan) {
      py::dict plan;
      plan["plan_id"] = e.plan->plan_id;
      plan["num_denoise_steps"] = e.plan->num_denoise_steps;
      plan["timesteps"] = e.plan->timesteps;
      plan["do_kv_recompute"] = e.plan->do_kv_recompute;
      plan["init_cache"] = e.plan->init_cache;
      plan["attention_bias"] = e.plan->attention_bias;
      plan["expected_generator_calls"] = e.plan->expected_generator_calls;
      out["plan"] = plan;
    } else {
      out["plan"] = py::none();
    }
    return out;
  });

  m.def("encode_result", [](const py::dict& spec, const std::vector<TensorTuple>& tensors) {
    Result result;
    result.action = action_from(spec["action"].cast<std::string>());
    result.ids = ids_from(spec);
    result.plan_id = spec["plan_id"].cast<std::uint64_t>();
    result.observed_generator_calls = spec["observed_generator_calls"].cast<std::uint32_t>();
    result.geometry = geometry_from(spec);
    result.durations.stage1_us = spec["stage1_us"].cast<std::uint64_t>();
    result.durations.idle_us = spec["idle_us"].cast<std::uint64_t>();
    const auto digests = spec["digests"].cast<std::tuple<std::uint64_t, std::uint64_t, std::uint64_t, std::uint64_t>>();
    result.digests = {std::get<0>(digests), std::get<1>(digests), std::get<2>(digests), std::get<3>(digests)};
    if (!spec["kv_frames"].is_none()) result.kv_frames = spec["kv_frames"].cast<std::uint32_t>();
    result.error_reason = spec["error_reason"].cast<std::string>();
    const std::vector<TensorView> views = views_from(tensors);
    const PreparedResult prepared = preflight_result(result, views, context_from(spec));
    return frame_bytes(prepared.frame());
  });

  m.def("decode_result", [](const py::buffer& frame, std::uint64_t token_digest, int version) {
    const py::buffer_info info = frame.request();
    const DecodedResult decoded =
        decode_result(span_of(info), FrameExpectations{token_digest, static_cast<ProtocolVersion>(version)});
    const Result& r = decoded.result;
    py::dict out;
    out["action"] = std::string(action_name(r.action));
    put_common(out, decoded.header, r.ids, r.geometry, decoded.manifest);
    out["plan_id"] = r.plan_id;
    out["observed_generator_calls"] = r.observed_generator_calls;
    out["stage1_us"] = r.durations.stage1_us;
    out["idle_us"] = r.durations.idle_us;
    out["digests"] = py::make_tuple(r.digests.kv_state, r.digests.output, r.digests.input, r.digests.ledger);
    out["kv_frames"] = r.kv_frames ? py::cast(*r.kv_frames) : py::none();
    out["error_reason"] = r.error_reason;
    return out;
  });
}

}  // namespace lockstep::python
