#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <qrl/backend/backend.hpp>
#include <qrl/core/error.hpp>

namespace qrl {

// Up to four dimensions, NCHW for images and [rows, cols] for matrices.
class Shape {
 public:
  static constexpr int max_rank = 4;
  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims) {
    require_shape(dims.size() <= max_rank, "a Shape has at most ", max_rank, " dimensions");
    for (auto d : dims) {
      require_shape(d >= 0, "negative dimension ", d);
      dims_[rank_++] = d;
    }
  }
  int rank() const { return rank_; }
  std::int64_t operator[](int i) const { return dims_[i]; }
  std::int64_t& operator[](int i) { return dims_[i]; }
  std::int64_t size() const {
    std::int64_t n = rank_ ? 1 : 0;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  std::string str() const {
    std::ostringstream out;
    out << '[';
    for (int i = 0; i < rank_; ++i) out << (i ? ", " : "") << dims_[i];
    out << ']';
    return out.str();
  }
  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }

 private:
  std::array<std::int64_t, max_rank> dims_{};
  int rank_ = 0;
};

// Non-owning view of backend memory with a shape. TensorView<B, const T>
// binds to a TensorView<B, T>, as const T* binds to T*.
template <Backend B, class T>
class TensorView {
 public:
  TensorView() = default;
  TensorView(T* data, Shape shape) : data_(data), shape_(shape) {}
  template <class U>
    requires(!std::is_same_v<U, T> && std::is_convertible_v<U*, T*>)
  TensorView(const TensorView<B, U>& other) : data_(other.data()), shape_(other.shape()) {}

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  std::int64_t size() const { return shape_.size(); }
  std::int64_t dim(int i) const { return shape_[i]; }
  int rank() const { return shape_.rank(); }
  bool empty() const { return data_ == nullptr; }

  TensorView reshaped(Shape shape) const {
    require_shape(shape.size() == size(), "cannot reshape ", shape_.str(), " to ", shape.str());
    return {data_, shape};
  }

 private:
  T* data_ = nullptr;
  Shape shape_;
};

// Owning backend buffer. resize() keeps the allocation when the new shape
// fits, so layers can reuse their activations across batches without
// reallocating in the training loop.
template <Backend B, class T>
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape) { resize(shape); }

  void resize(Shape shape) {
    const auto needed = static_cast<std::size_t>(shape.size());
    if (needed > capacity_) {
      data_.reset(backend_traits<B>::template allocate<T>(needed));
      capacity_ = needed;
    }
    shape_ = shape;
  }

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  const Shape& shape() const { return shape_; }
  std::int64_t size() const { return shape_.size(); }
  std::int64_t dim(int i) const { return shape_[i]; }

  TensorView<B, T> view() { return {data_.get(), shape_}; }
  TensorView<B, const T> view() const { return {data_.get(), shape_}; }
  operator TensorView<B, T>() { return view(); }
  operator TensorView<B, const T>() const { return view(); }

 private:
  struct Deleter {
    void operator()(T* p) const noexcept { backend_traits<B>::deallocate(p); }
  };
  std::unique_ptr<T, Deleter> data_;
  std::size_t capacity_ = 0;
  Shape shape_;
};

template <Backend B, class T>
std::vector<std::remove_const_t<T>> to_host(Context<B>& ctx, TensorView<B, T> view) {
  std::vector<std::remove_const_t<T>> host(static_cast<std::size_t>(view.size()));
  backend_traits<B>::download(ctx, view.data(), host.data(), host.size());
  backend_traits<B>::synchronize(ctx);
  return host;
}

template <Backend B, class T>
std::vector<T> to_host(Context<B>& ctx, const Tensor<B, T>& tensor) {
  return to_host<B, const T>(ctx, tensor.view());
}

template <Backend B, class T>
void upload(Context<B>& ctx, std::span<const T> host, Tensor<B, T>& tensor) {
  require_shape(static_cast<std::int64_t>(host.size()) == tensor.size(), "upload of ", host.size(),
                " values into a tensor of shape ", tensor.shape().str());
  backend_traits<B>::upload(ctx, host.data(), tensor.data(), host.size());
}

template <Backend B, class T>
Tensor<B, T> from_host(Context<B>& ctx, std::span<const T> host, Shape shape) {
  Tensor<B, T> tensor(shape);
  upload<B, T>(ctx, host, tensor);
  return tensor;
}

}  // namespace qrl
