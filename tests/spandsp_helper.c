/* A tiny driver of Debian's libspandsp: SpanDSP's transmitters and receivers as an
 * independent reference for the caller-ID and DTMF tests (built by tests/spandsp_peer.py).
 *
 *   spandsp_helper dtmf-tx DIGITS LEVEL_DBM0 TWIST_DB ON_MS OFF_MS   > pcm16 at 8 kHz on stdout
 *   spandsp_helper dtmf-rx                                           < pcm16; prints the digits
 *   spandsp_helper adsi-tx class|clip|clip-dtmf HEX                  > pcm16 (HEX: the message bytes;
 *                                                                      for clip-dtmf the keys' ASCII)
 *   spandsp_helper adsi-rx class|clip|clip-dtmf                      < pcm16; one hex line per message
 *
 * PCM is signed 16-bit native-endian mono at 8000 Hz, the only rate SpanDSP runs at.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <spandsp.h>

#define BLOCK 160

static int standard_of(const char *name)
{
    if (strcmp(name, "class") == 0)
        return ADSI_STANDARD_CLASS;
    if (strcmp(name, "clip") == 0)
        return ADSI_STANDARD_CLIP;
    if (strcmp(name, "clip-dtmf") == 0)
        return ADSI_STANDARD_CLIP_DTMF;
    fprintf(stderr, "unknown standard %s\n", name);
    exit(2);
}

static void put_adsi(void *user_data, const uint8_t *msg, int len)
{
    (void) user_data;
    for (int i = 0; i < len; i++)
        printf("%02x", msg[i]);
    printf("\n");
    fflush(stdout);
}

static int unhex(const char *hex, uint8_t *out, int max)
{
    int n = 0;
    for (; hex[0] && hex[1] && n < max; hex += 2)
    {
        unsigned int b;
        if (sscanf(hex, "%2x", &b) != 1)
            return -1;
        out[n++] = (uint8_t) b;
    }
    return n;
}

int main(int argc, char **argv)
{
    int16_t amp[BLOCK];
    int n;

    if (argc >= 7 && strcmp(argv[1], "dtmf-tx") == 0)
    {
        dtmf_tx_state_t *tx = dtmf_tx_init(NULL);
        dtmf_tx_set_level(tx, atoi(argv[3]), atoi(argv[4]));
        dtmf_tx_set_timing(tx, atoi(argv[5]), atoi(argv[6]));
        dtmf_tx_put(tx, argv[2], -1);
        while ((n = dtmf_tx(tx, amp, BLOCK)) > 0)
            fwrite(amp, sizeof(int16_t), n, stdout);
        dtmf_tx_free(tx);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "dtmf-rx") == 0)
    {
        char digits[1024];
        dtmf_rx_state_t *rx = dtmf_rx_init(NULL, NULL, NULL);
        while ((n = fread(amp, sizeof(int16_t), BLOCK, stdin)) > 0)
            dtmf_rx(rx, amp, n);
        memset(amp, 0, sizeof(amp));
        for (int i = 0; i < 10; i++)
            dtmf_rx(rx, amp, BLOCK);
        n = dtmf_rx_get(rx, digits, sizeof(digits) - 1);
        digits[n] = '\0';
        printf("%s\n", digits);
        dtmf_rx_free(rx);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "adsi-tx") == 0)
    {
        uint8_t msg[256];
        int len = unhex(argv[3], msg, sizeof(msg));
        adsi_tx_state_t *tx = adsi_tx_init(NULL, standard_of(argv[2]));
        if (len <= 0 || adsi_tx_put_message(tx, msg, len) != len)
        {
            fprintf(stderr, "adsi_tx_put_message refused the message\n");
            return 1;
        }
        while ((n = adsi_tx(tx, amp, BLOCK)) > 0)
            fwrite(amp, sizeof(int16_t), n, stdout);
        adsi_tx_free(tx);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "adsi-rx") == 0)
    {
        adsi_rx_state_t *rx = adsi_rx_init(NULL, standard_of(argv[2]), put_adsi, NULL);
        while ((n = fread(amp, sizeof(int16_t), BLOCK, stdin)) > 0)
            adsi_rx(rx, amp, n);
        memset(amp, 0, sizeof(amp));
        for (int i = 0; i < 50; i++)
            adsi_rx(rx, amp, BLOCK);
        adsi_rx_free(rx);
        return 0;
    }
    fprintf(stderr, "usage: see the comment at the top of spandsp_helper.c\n");
    return 2;
}
