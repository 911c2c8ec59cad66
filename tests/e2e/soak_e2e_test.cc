// placeholder, replaced below
#include "gtest/gtest.h"
TEST(SoakE2ETest, Placeholder) {}
