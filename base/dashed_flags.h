// Abseil names flags with underscores (--handle_socket); users type dashes
// (--handle-socket). Both binaries accept either spelling through this rewrite.
// Thread-safe (pure).
#pragma once

#include <string>
#include <vector>

namespace weightd {

// argv with every "--flag-name[=value]" spelled "--flag_name[=value]"; values and
// positional arguments are untouched. The pointers point into `storage`.
std::vector<char*> AcceptDashedFlags(int argc, char** argv, std::vector<std::string>& storage);

}  // namespace weightd
