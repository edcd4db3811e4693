// Envelope and Result frames for Python: meta from a dict, tensors described
// by (key, index, dtype, shape, strides, data pointer, bytes). Preflight runs
// every check before a frame exists (a failure strands nobody); decode
// validates header, checksums, schema and manifest.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <optional>
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

// Meta crosses the boundary once per control message, so the conversion
// works on the CPython objects directly: a str's UTF-8 is read where CPython
// caches it (no temporary bytes object, as a generic cast would make) and an
// int is read without an exception on the way.
std::string utf8_of(const std::string& key, PyObject* text) {
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(text, &size);
  if (data == nullptr) {
    PyErr_Clear();
    throw Error(ErrorCode::kEncode, "meta '" + key + "' string cannot be encoded as UTF-8 (a lone surrogate?)");
  }
  return std::string(data, static_cast<std::size_t>(size));
}

std::int64_t int64_of(const std::string& key, PyObject* value) {
  int overflow = 0;
  const long long out = PyLong_AsLongLongAndOverflow(value, &overflow);
  if (overflow != 0) throw Error(ErrorCode::kEncode, "meta '" + key + "' integer does not fit in 64 bits");
  if (out == -1 && PyErr_Occurred()) throw py::error_already_set();
  return out;
}

bool is_int(PyObject* value) { return PyLong_Check(value) && !PyBool_Check(value); }

// The items of a list or tuple, which hold one type.
MetaValue list_value(const std::string& key, PyObject* sequence) {
  const Py_ssize_t size = PySequence_Fast_GET_SIZE(sequence);
  PyObject** items = PySequence_Fast_ITEMS(sequence);
  if (size == 0) return std::vector<std::int64_t>{};
  PyObject* first = items[0];
  auto collect = [&](auto is_same_type, auto convert) {
    std::vector<decltype(convert(first))> out;
    out.reserve(static_cast<std::size_t>(size));
    for (Py_ssize_t i = 0; i < size; ++i) {
      if (!is_same_type(items[i])) {
        throw Error(ErrorCode::kEncode, "meta '" + key + "' list mixes " + type_name(first) + " and " +
                                            type_name(items[i]) + " items (lists hold one type)");
      }
      out.push_back(convert(items[i]));
    }
    return MetaValue(std::move(out));
  };
  if (PyBool_Check(first)) {
    return collect([](PyObject* item) { return PyBool_Check(item) != 0; },
                   [](PyObject* item) { return item == Py_True; });
  }
  if (is_int(first)) return collect(is_int, [&](PyObject* item) { return int64_of(key, item); });
  if (PyFloat_Check(first)) {
    return collect([](PyObject* item) { return PyFloat_Check(item) != 0; },
                   [](PyObject* item) { return PyFloat_AS_DOUBLE(item); });
  }
  if (PyUnicode_Check(first)) {
    return collect([](PyObject* item) { return PyUnicode_Check(item) != 0; },
                   [&](PyObject* item) { return utf8_of(key, item); });
  }
  reject_value(key + "[0]", first);
}

Meta meta_from(const py::dict& meta) {
  Meta out;
  out.reserve(meta.size());
  Py_ssize_t position = 0;
  PyObject* key_object = nullptr;
  PyObject* value = nullptr;
  while (PyDict_Next(meta.ptr(), &position, &key_object, &value)) {
    if (!PyUnicode_Check(key_object)) {
      throw Error(ErrorCode::kEncode, "meta key of type " + type_name(key_object) + " (keys are str)");
    }
    std::string key = utf8_of("<key>", key_object);
    if (PyBool_Check(value)) {
      out.set(std::move(key), value == Py_True);
    } else if (PyLong_Check(value)) {
      const std::int64_t number = int64_of(key, value);
      out.set(std::move(key), number);
    } else if (PyFloat_Check(value)) {
      out.set(std::move(key), PyFloat_AS_DOUBLE(value));
    } else if (PyUnicode_Check(value)) {
      std::string text = utf8_of(key, value);
      out.set(std::move(key), std::move(text));
    } else if (PyList_Check(value) || PyTuple_Check(value)) {
      MetaValue items = list_value(key, value);  // a list or tuple is its own "fast sequence"
      out.set(std::move(key), std::move(items));
    } else {
      reject_value(key, value);
    }
  }
  return out;
}

// New references, handed to pybind11 to own.
PyObject* python_of(std::int64_t v) { return PyLong_FromLongLong(v); }
PyObject* python_of(double v) { return PyFloat_FromDouble(v); }
PyObject* python_of(bool v) { return PyBool_FromLong(v ? 1 : 0); }
PyObject* python_of(const std::string& v) {
  return PyUnicode_FromStringAndSize(v.data(), static_cast<Py_ssize_t>(v.size()));
}
template <typename T>
PyObject* python_of(const std::vector<T>& items) {
  py::list out(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    PyObject* item = python_of(items[i]);
    if (item == nullptr) throw py::error_already_set();
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), item);  // steals
  }
  return out.release().ptr();
}

py::dict meta_to(const Meta& meta) {
  py::dict out;
  for (const auto& [key, value] : meta.entries()) {
    const py::object name = py::reinterpret_steal<py::object>(python_of(key));
    if (!name) throw py::error_already_set();
    const py::object item =
        py::reinterpret_steal<py::object>(std::visit([](const auto& v) { return python_of(v); }, value));
    if (!item || PyDict_SetItem(out.ptr(), name.ptr(), item.ptr()) != 0) throw py::error_already_set();
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

// The frame fields cross as tuples in a fixed order (wire.py unpacks them by
// name): one control message per chunk, so no dict is built per field.
using ContextTuple = std::tuple<int, std::int32_t, std::uint64_t>;  // version, sender rank, token digest
using IdsTuple = std::tuple<std::uint64_t, std::uint64_t, std::uint64_t>;  // call id, chunk index, cache epoch
using GeometryTuple = std::tuple<std::uint32_t, std::uint32_t, std::uint32_t>;
// plan id, steps, timesteps, recompute, init cache, attention bias, expected generator calls
using PlanTuple = std::tuple<std::uint64_t, std::uint32_t, std::vector<double>, bool, bool, double, std::uint32_t>;
using DigestsTuple = std::tuple<std::uint64_t, std::uint64_t, std::uint64_t, std::uint64_t>;

FrameContext context_from(const ContextTuple& context) {
  const auto& [version, sender_rank, token_digest] = context;
  if (version < 0 || version > std::numeric_limits<ProtocolVersion>::max()) {
    throw Error(ErrorCode::kEncode, "protocol version " + std::to_string(version) + " is out of range");
  }
  return FrameContext{static_cast<ProtocolVersion>(version), sender_rank, token_digest};
}

CallIds ids_from(const IdsTuple& ids) { return CallIds{std::get<0>(ids), std::get<1>(ids), std::get<2>(ids)}; }

Geometry geometry_from(const GeometryTuple& geometry) {
  return Geometry{std::get<0>(geometry), std::get<1>(geometry), std::get<2>(geometry)};
}

Plan plan_from(const PlanTuple& plan) {
  Plan p;
  std::tie(p.plan_id, p.num_denoise_steps, p.timesteps, p.do_kv_recompute, p.init_cache, p.attention_bias,
           p.expected_generator_calls) = plan;
  return p;
}

py::bytes frame_bytes(std::span<const std::uint8_t> frame) {
  return py::bytes(reinterpret_cast<const char*>(frame.data()), frame.size());
}

// A bytes frame (what a channel delivers) is read in place; any other
// buffer through the buffer protocol.
template <typename Decode>
auto decode_from(const py::object& frame, Decode decode) {
  if (PyBytes_Check(frame.ptr())) {
    const auto* data = reinterpret_cast<const std::uint8_t*>(PyBytes_AS_STRING(frame.ptr()));
    return decode(std::span<const std::uint8_t>(data, static_cast<std::size_t>(PyBytes_GET_SIZE(frame.ptr()))));
  }
  if (!PyObject_CheckBuffer(frame.ptr())) {
    throw Error(ErrorCode::kDecode, "a frame is bytes or a buffer, not " + type_name(frame));
  }
  const py::buffer_info info = py::reinterpret_borrow<py::buffer>(frame).request();
  if (info.ndim > 1 || (info.ndim == 1 && info.strides[0] != info.itemsize)) {
    throw Error(ErrorCode::kDecode, "a frame buffer must be contiguous bytes (got " + std::to_string(info.ndim) +
                                        " dimensions, stride " +
                                        std::to_string(info.ndim == 1 ? info.strides[0] : 0) + ")");
  }
  return decode(std::span<const std::uint8_t>(static_cast<const std::uint8_t*>(info.ptr),
                                              static_cast<std::size_t>(info.size * info.itemsize)));
}

py::tuple ids_to(const CallIds& ids) { return py::make_tuple(ids.call_id, ids.chunk_index, ids.cache_epoch); }

py::tuple geometry_to(const Geometry& geometry) {
  return py::make_tuple(geometry.frames, geometry.tokens_per_frame, geometry.dim);
}

void check_arity(const py::tuple& args, std::size_t expected, const char* kind) {
  if (args.size() != expected) {
    throw Error(ErrorCode::kInternal, std::string(kind) + " arguments: " + std::to_string(args.size()) +
                                          " fields, expected " + std::to_string(expected));
  }
}

// Field `index` of the preflight arguments as T; a value that does not fit
// is refused naming the field, as any other preflight failure.
template <typename T>
T field(const py::tuple& args, std::size_t index, const char* name) {
  try {
    return args[index].cast<T>();
  } catch (const py::cast_error&) {
    throw Error(ErrorCode::kEncode, std::string(name) + " has type " + type_name(args[index]) + ", which does not fit");
  }
}

// Fields 1-3, which envelopes and results share: action, ids, geometry.
template <typename Message>
void read_common_fields(const py::tuple& args, Message& message) {
  message.action = action_from(field<std::string>(args, 1, "action"));
  message.ids = ids_from(field<IdsTuple>(args, 2, "call_id/chunk_index/cache_epoch"));
  message.geometry = geometry_from(field<GeometryTuple>(args, 3, "geometry"));
}

}  // namespace

// (context, action, ids, geometry, meta, error_reason, plan or None, tensors): Codec._envelope_args.
PreparedEnvelope prepare_envelope(const py::tuple& args) {
  check_arity(args, 8, "envelope");
  Envelope envelope;
  read_common_fields(args, envelope);
  if (!PyDict_Check(args[4].ptr())) {
    throw Error(ErrorCode::kEncode, "meta has type " + type_name(args[4]) + ", not dict");
  }
  envelope.meta = meta_from(py::reinterpret_borrow<py::dict>(args[4]));
  envelope.error_reason = field<std::string>(args, 5, "error_reason");
  if (!args[6].is_none()) envelope.plan = plan_from(field<PlanTuple>(args, 6, "plan"));
  return preflight_envelope(envelope, views_from(field<std::vector<TensorTuple>>(args, 7, "tensors")),
                            context_from(field<ContextTuple>(args, 0, "codec context")));
}

// (context, action, ids, geometry, plan_id, observed_generator_calls, stage1_us, idle_us, digests,
//  kv_frames or None, error_reason, tensors): Codec._result_args.
PreparedResult prepare_result(const py::tuple& args) {
  check_arity(args, 12, "result");
  Result result;
  read_common_fields(args, result);
  result.plan_id = field<std::uint64_t>(args, 4, "plan_id");
  result.observed_generator_calls = field<std::uint32_t>(args, 5, "observed_generator_calls");
  result.durations.stage1_us = field<std::uint64_t>(args, 6, "stage1_us");
  result.durations.idle_us = field<std::uint64_t>(args, 7, "idle_us");
  const auto digests = field<DigestsTuple>(args, 8, "digests");
  result.digests = {std::get<0>(digests), std::get<1>(digests), std::get<2>(digests), std::get<3>(digests)};
  result.kv_frames = field<std::optional<std::uint32_t>>(args, 9, "kv_frames");
  result.error_reason = field<std::string>(args, 10, "error_reason");
  return preflight_result(result, views_from(field<std::vector<TensorTuple>>(args, 11, "tensors")),
                          context_from(field<ContextTuple>(args, 0, "codec context")));
}

FrameExpectations frame_expectations(std::uint64_t token_digest, int version) {
  if (version < 0 || version > std::numeric_limits<ProtocolVersion>::max()) {
    throw Error(ErrorCode::kInvalidArgument, "protocol version " + std::to_string(version) + " is out of range");
  }
  return FrameExpectations{token_digest, static_cast<ProtocolVersion>(version)};
}

// (action, ids, geometry, meta, error_reason, plan or None, manifest, sender rank, body checksum)
py::tuple envelope_fields(const DecodedEnvelope& decoded) {
  const Envelope& e = decoded.envelope;
  py::object plan = py::none();
  if (e.plan) {
    plan = py::make_tuple(e.plan->plan_id, e.plan->num_denoise_steps, e.plan->timesteps, e.plan->do_kv_recompute,
                          e.plan->init_cache, e.plan->attention_bias, e.plan->expected_generator_calls);
  }
  return py::make_tuple(std::string(action_name(e.action)), ids_to(e.ids), geometry_to(e.geometry), meta_to(e.meta),
                        e.error_reason, plan, manifest_to(decoded.manifest), decoded.header.sender_rank,
                        decoded.header.body_checksum);
}

// (action, ids, geometry, plan_id, observed_generator_calls, stage1_us, idle_us, digests, kv_frames or None,
//  error_reason, manifest, sender rank, body checksum)
py::tuple result_fields(const DecodedResult& decoded) {
  const Result& r = decoded.result;
  return py::make_tuple(std::string(action_name(r.action)), ids_to(r.ids), geometry_to(r.geometry), r.plan_id,
                        r.observed_generator_calls, r.durations.stage1_us, r.durations.idle_us,
                        py::make_tuple(r.digests.kv_state, r.digests.output, r.digests.input, r.digests.ledger),
                        r.kv_frames ? py::cast(*r.kv_frames) : py::none(), r.error_reason,
                        manifest_to(decoded.manifest), decoded.header.sender_rank, decoded.header.body_checksum);
}

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

  m.def("encode_envelope", [](const py::tuple& args) { return frame_bytes(prepare_envelope(args).frame()); });

  m.def("decode_envelope", [](const py::object& frame, std::uint64_t token_digest, int version) {
    const FrameExpectations expected = frame_expectations(token_digest, version);
    return envelope_fields(
        decode_from(frame, [&](std::span<const std::uint8_t> bytes) { return decode_envelope(bytes, expected); }));
  });

  m.def("encode_result", [](const py::tuple& args) { return frame_bytes(prepare_result(args).frame()); });

  m.def("decode_result", [](const py::object& frame, std::uint64_t token_digest, int version) {
    const FrameExpectations expected = frame_expectations(token_digest, version);
    return result_fields(
        decode_from(frame, [&](std::span<const std::uint8_t> bytes) { return decode_result(bytes, expected); }));
  });
}

}  // namespace lockstep::python
