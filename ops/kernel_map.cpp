// Kernel maps on CPU: the (in_row, out_row) pairs of every kernel offset, OpenMP.
//
// Coordinates arrive as packed int64 keys (pcseg/sparse/coords.py: batch and biased x, y, z
// in fixed bit fields, every key >= 0), so shifting a coordinate by a kernel offset is one
// add of that offset's packed shift. For output row o and offset k the input row is the one
// whose key equals out_keys[o] + shifts[k], looked up in an open-addressing hash table of the
// input keys built once per call. Offsets are independent tasks, and within one the output
// rows are visited in order, so pairs come out sorted by (offset, out row): the KernelMap
// contract, and exactly the pairs of the PyTorch path in pcseg/sparse/manager.py.
#include <torch/extension.h>
#include <omp.h>

#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kEmpty = -1;  // no packed key is negative

// Open addressing with linear probing over a power-of-two table at most half full.
class KeyTable {
 public:
  explicit KeyTable(const int64_t* keys, int64_t n) {
    int bits = 4;
    while ((int64_t{1} << bits) < 2 * n) ++bits;
    mask_ = (int64_t{1} << bits) - 1;
    keys_.assign(size_t{1} << bits, kEmpty);
    rows_.resize(size_t{1} << bits);
    for (int64_t row = 0; row < n; ++row) {
      int64_t slot = slot_of(keys[row]);
      while (keys_[slot] != kEmpty) slot = (slot + 1) & mask_;
      keys_[slot] = keys[row];
      rows_[slot] = row;
    }
  }

  // The row holding `key`, or -1.
  int64_t find(int64_t key) const {
    if (key < 0) return -1;
    for (int64_t slot = slot_of(key);; slot = (slot + 1) & mask_) {
      if (keys_[slot] == key) return rows_[slot];
      if (keys_[slot] == kEmpty) return -1;
    }
  }

 private:
  int64_t slot_of(int64_t key) const {
    // splitmix64's finalizer: neighbouring keys differ in few low bits, this spreads them.
    uint64_t x = static_cast<uint64_t>(key);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return static_cast<int64_t>((x ^ (x >> 31)) & static_cast<uint64_t>(mask_));
  }

  int64_t mask_;
  std::vector<int64_t> keys_, rows_;
};

torch::Tensor checked_keys(const torch::Tensor& keys, const char* name) {
  TORCH_CHECK(keys.device().is_cpu() && keys.scalar_type() == torch::kInt64 && keys.dim() == 1,
              "native kernel map: ", name, " must be a CPU int64 vector, got ", keys.device(), " ",
              keys.scalar_type(), " with ", keys.dim(), " dims");
  return keys.contiguous();
}

}  // namespace

// in_keys [N_in] (unique), out_keys [N_out], shifts [K] -> [in_rows [P], out_rows [P], offset_ptr [K + 1]].
std::vector<torch::Tensor> kernel_map(torch::Tensor in_keys, torch::Tensor out_keys,
                                      torch::Tensor shifts) {
  in_keys = checked_keys(in_keys, "in_keys");
  out_keys = checked_keys(out_keys, "out_keys");
  shifts = checked_keys(shifts, "shifts");
  const int64_t n_out = out_keys.size(0), num_offsets = shifts.size(0);
  const KeyTable table(in_keys.data_ptr<int64_t>(), in_keys.size(0));
  const int64_t* out = out_keys.data_ptr<int64_t>();
  const int64_t* shift = shifts.data_ptr<int64_t>();

  // Pairs of each offset, (in_row, out_row) interleaved.
  std::vector<std::vector<int64_t>> pairs(num_offsets);
#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads())
  for (int64_t k = 0; k < num_offsets; ++k) {
    std::vector<int64_t>& mine = pairs[k];
    for (int64_t o = 0; o < n_out; ++o) {
      const int64_t row = table.find(out[o] + shift[k]);
      if (row >= 0) {
        mine.push_back(row);
        mine.push_back(o);
      }
    }
  }

  torch::Tensor offset_ptr = torch::zeros({num_offsets + 1}, torch::kInt64);
  int64_t* ptr = offset_ptr.data_ptr<int64_t>();
  for (int64_t k = 0; k < num_offsets; ++k) ptr[k + 1] = ptr[k] + static_cast<int64_t>(pairs[k].size() / 2);
  torch::Tensor in_rows = torch::empty({ptr[num_offsets]}, torch::kInt64);
  torch::Tensor out_rows = torch::empty({ptr[num_offsets]}, torch::kInt64);
  int64_t* in_data = in_rows.data_ptr<int64_t>();
  int64_t* out_data = out_rows.data_ptr<int64_t>();
#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads())
  for (int64_t k = 0; k < num_offsets; ++k) {
    const std::vector<int64_t>& mine = pairs[k];
    for (size_t p = 0; p < mine.size() / 2; ++p) {
      in_data[ptr[k] + p] = mine[2 * p];
      out_data[ptr[k] + p] = mine[2 * p + 1];
    }
  }
  return {in_rows, out_rows, offset_ptr};
}
