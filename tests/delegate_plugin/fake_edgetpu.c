/* A real TFLite delegate *plugin* (the ABI of libedgetpu's
 * tflite_plugin_create_delegate / tflite_plugin_destroy_delegate) standing in for the
 * Edge TPU library in tests: no Edge TPU hardware is available where the tests run.
 *
 * FAKE_EDGETPU_MODE=nodevice : behaves like libedgetpu without a device (reports an error
 *                              through the callback and returns NULL).
 * otherwise                  : returns a valid delegate whose Prepare claims no nodes, so
 *                              the graph runs on the CPU kernels.
 * FAKE_EDGETPU_LOG=path      : appends "key=value" for every option received.
 *
 * tests/test_runtime.py compiles it with the system C compiler. Layout of TfLiteDelegate
 * as in tensorflow/lite/core/c/common.h (stable since TF 2.x).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct FakeDelegate {
  void* data_;
  int (*Prepare)(void* context, struct FakeDelegate* delegate);
  int (*CopyFromBufferHandle)(void*, struct FakeDelegate*, int, void*);
  int (*CopyToBufferHandle)(void*, struct FakeDelegate*, int, void*);
  void (*FreeBufferHandle)(void*, struct FakeDelegate*, int*);
  int64_t flags;
  void* opaque_delegate_builder;
} FakeDelegate;

static int prepare_nothing(void* context, FakeDelegate* delegate) {
  (void)context;
  (void)delegate;
  return 0; /* kTfLiteOk: no node is delegated */
}

FakeDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n,
                                            void (*report_error)(const char*)) {
  const char* log_path = getenv("FAKE_EDGETPU_LOG");
  if (log_path != NULL) {
    FILE* f = fopen(log_path, "a");
    if (f != NULL) {
      for (size_t i = 0; i < n; ++i) fprintf(f, "%s=%s\n", keys[i], values[i]);
      fprintf(f, "created\n");
      fclose(f);
    }
  }
  const char* mode = getenv("FAKE_EDGETPU_MODE");
  if (mode != NULL && strcmp(mode, "nodevice") == 0) {
    if (report_error != NULL) report_error("Failed to open device: no Edge TPU found (fake)");
    return NULL;
  }
  FakeDelegate* d = (FakeDelegate*)calloc(1, sizeof(FakeDelegate));
  if (d == NULL) return NULL;
  d->Prepare = prepare_nothing;
  return d;
}

void tflite_plugin_destroy_delegate(FakeDelegate* d) { free(d); }
