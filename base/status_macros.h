// Early-return helpers for absl::Status and absl::StatusOr, so call sites stay flat.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define WEIGHTD_CONCAT_INNER_(a, b) a##b
#define WEIGHTD_CONCAT_(a, b) WEIGHTD_CONCAT_INNER_(a, b)

#define WEIGHTD_RETURN_IF_ERROR(expr)               \
  do {                                              \
    ::absl::Status weightd_status_ = (expr);        \
    if (!weightd_status_.ok()) return weightd_status_; \
  } while (0)

#define WEIGHTD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(*tmp)

// WEIGHTD_ASSIGN_OR_RETURN(auto x, FunctionReturningStatusOr());
#define WEIGHTD_ASSIGN_OR_RETURN(lhs, expr) \
  WEIGHTD_ASSIGN_OR_RETURN_IMPL_(WEIGHTD_CONCAT_(weightd_statusor_, __LINE__), lhs, expr)
