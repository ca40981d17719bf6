// Named errors and the Result type every layer of certcustody returns.
//
// An Error names what went wrong (a stable, greppable code such as
// "custody.pin_incorrect"), says what happened in words, and tells the
// operator what to do about it. The CLI prints it as
//   error <code>: <what> — <remedy>
// Normal outcomes are values; exceptions never cross a module edge.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace certcustody {

struct Error {
  std::string code;    // stable name, e.g. "custody.pin_incorrect"
  std::string what;    // what happened, with the names involved
  std::string remedy;  // what the operator should do
  unsigned long native = 0;  // CK_RV / TPM2_RC / HRESULT when there is one

  std::string to_string() const;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}      // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const Error& error() const { return std::get<1>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  Result<void> status() const;  // the outcome without the value

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : e_(std::move(error)) {}  // NOLINT
  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return *e_; }

 private:
  std::optional<Error> e_;
};

using Status = Result<void>;

template <class T>
Result<void> Result<T>::status() const {
  if (ok()) return {};
  return error();
}

}  // namespace certcustody

#define CC_CONCAT_INNER(a, b) a##b
#define CC_CONCAT(a, b) CC_CONCAT_INNER(a, b)

// Returns the error of `expr` from the enclosing function.
#define CC_TRY(expr)                                       \
  do {                                                     \
    auto&& cc_try_result_ = (expr);                        \
    if (!cc_try_result_) return cc_try_result_.error();    \
  } while (0)

// Declares/assigns `lhs` from the value of `expr`, or returns its error.
#define CC_TRY_ASSIGN(lhs, expr)                                        \
  auto CC_CONCAT(cc_try_, __LINE__) = (expr);                           \
  if (!CC_CONCAT(cc_try_, __LINE__)) return CC_CONCAT(cc_try_, __LINE__).error(); \
  lhs = std::move(CC_CONCAT(cc_try_, __LINE__)).value()
