// A stand-in for libnvidia-ml.so.1 exporting only what NVMLGPUEvidence calls. Compiled by the tests at run time
// (cc -shared -fPIC). Two Hopper GPUs; each attestation report starts with a 37-byte SPDM GET_MEASUREMENTS
// request carrying the caller's nonce at offset 4, as real reports do. Bytes past the reported sizes are
// filled with junk so the tests prove only the first `...Size` bytes are used.
// Build with -DFAKE_NVML_CC_OFF for a system whose confidential-computing feature is disabled, and with
// -DFAKE_NVML_HANG_FILE='"/path"' for a driver that hangs: while that file exists, every attestation-report
// call blocks (polling every 10 ms), as a wedged GPU would. fake_nvml_init_calls() / fake_nvml_shutdown_calls()
// let a test count initialisations.
#include <stdint.h>
#include <string.h>
#include <unistd.h>

typedef int nvmlReturn_t;
typedef struct fakeDevice *nvmlDevice_t;

// Layouts as in NVIDIA nvml.h / nvidia-ml-py pynvml.py.
typedef struct {
    unsigned int environment;
    unsigned int ccFeature;
    unsigned int devToolsMode;
} nvmlConfComputeSystemState_t;

typedef struct {
    unsigned int isCecAttestationReportPresent;
    unsigned int attestationReportSize;
    unsigned int cecAttestationReportSize;
    unsigned char nonce[0x20];
    unsigned char attestationReport[0x2000];
    unsigned char cecAttestationReport[0x1000];
} nvmlConfComputeGpuAttestationReport_t;

typedef struct {
    unsigned int certChainSize;
    unsigned int attestationCertChainSize;
    unsigned char certChain[0x1000];
    unsigned char attestationCertChain[0x1400];
} nvmlConfComputeGpuCertificate_t;

static const char chain[] =
    "-----BEGIN CERTIFICATE-----\n"
    "RkFLRS1HUFUtREVWSUNFLUNFUlRJRklDQVRFLU5PVC1SRUFM\n"
    "-----END CERTIFICATE-----\n"
    "-----BEGIN CERTIFICATE-----\n"
    "RkFLRS1HUFUtUk9PVC1DRVJUSUZJQ0FURS1OT1QtUkVBTA==\n"
    "-----END CERTIFICATE-----\n";

static int initialised = 0;
static int init_calls = 0;
static int shutdown_calls = 0;

int fake_nvml_init_calls(void) { return init_calls; }
int fake_nvml_shutdown_calls(void) { return shutdown_calls; }

nvmlReturn_t nvmlInit_v2(void) {
    initialised++;
    init_calls++;
    return 0;
}

nvmlReturn_t nvmlShutdown(void) {
    if (initialised == 0) return 1;  // NVML_ERROR_UNINITIALIZED
    initialised--;
    shutdown_calls++;
    return 0;
}

const char *nvmlErrorString(nvmlReturn_t result) { return result == 0 ? "Success" : "Fake NVML error"; }

nvmlReturn_t nvmlSystemGetConfComputeState(nvmlConfComputeSystemState_t *state) {
    if (!initialised) return 1;
    state->environment = 2;  // NVML_CC_SYSTEM_ENVIRONMENT_PROD
#ifdef FAKE_NVML_CC_OFF
    state->ccFeature = 0;
#else
    state->ccFeature = 1;  // NVML_CC_SYSTEM_FEATURE_ENABLED
#endif
    state->devToolsMode = 0;
    return 0;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialised) return 1;
    *count = 2;
    return 0;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialised || index >= 2) return 2;  // NVML_ERROR_INVALID_ARGUMENT
    *device = (nvmlDevice_t)(uintptr_t)(index + 1);
    return 0;
}

nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device, unsigned int *arch) {
    (void)device;
    *arch = 9;  // NVML_DEVICE_ARCH_HOPPER
    return 0;
}

nvmlReturn_t nvmlDeviceGetConfComputeGpuAttestationReport(nvmlDevice_t device,
                                                           nvmlConfComputeGpuAttestationReport_t *report) {
    unsigned int index = (unsigned int)(uintptr_t)device;
#ifdef FAKE_NVML_HANG_FILE
    while (access(FAKE_NVML_HANG_FILE, F_OK) == 0) usleep(10000);
#endif
    if (!initialised) return 1;
    memset(report->attestationReport, 0xAA, sizeof report->attestationReport);
    unsigned char *r = report->attestationReport;
    r[0] = 0x11;  // SPDM 1.1
    r[1] = 0xE0;  // GET_MEASUREMENTS
    r[2] = 0x01;  // signature requested
    r[3] = 0xFF;  // all measurements
    memcpy(r + 4, report->nonce, 32);
    r[36] = 0x00;  // slot
    unsigned int size = 37 + 16 * index;  // device 1: 53 bytes, device 2: 69 bytes
    for (unsigned int i = 37; i < size; i++) r[i] = (unsigned char)(index * 0x10 + (i - 37));
    report->attestationReportSize = size;
    report->isCecAttestationReportPresent = 0;
    report->cecAttestationReportSize = 0;
    return 0;
}

nvmlReturn_t nvmlDeviceGetConfComputeGpuCertificate(nvmlDevice_t device, nvmlConfComputeGpuCertificate_t *cert) {
    (void)device;
    memset(cert->certChain, 'Z', sizeof cert->certChain);
    memset(cert->attestationCertChain, 'Z', sizeof cert->attestationCertChain);
    memcpy(cert->attestationCertChain, chain, sizeof chain - 1);
    cert->attestationCertChainSize = sizeof chain - 1;
    cert->certChainSize = 0;
    return 0;
}
