/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * quic sniffer: the RFC 9001 and RFC 9369 Appendix A vectors (keys and the protected client
 * Initial), then packets sealed here with OpenSSL from those keys: a ClientHello longer than one
 * packet split over two Initials delivered out of order, overlapping and conflicting CRYPTO
 * frames, coalesced packets, a client that switched connection IDs; and bad input: truncated,
 * oversized, garbage, wrong version, tampered ciphertext, lying lengths, frames not allowed in
 * Initials, datagrams that are not QUIC.
 *
 * The sealer below is checked first: from the RFC's plaintext it must reproduce the RFC's
 * protected packet byte for byte, so packets it builds are what a real client would send.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include <xproxy/plugin.h>

#include "quic.h"
#include "quic_initial.h"

/* ---- RFC vectors (facts, transcribed) -------------------------------------------------------- */

static const char rfc_dcid_hex[] = "8394c8f03e515708";

/* RFC 9001 A.2: the ClientHello in the client Initial. */
static const char rfc_ch_hex[] =
	"010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47f06a2b69484c00000413011302"
	"010000c000000010000e00000b6578616d706c652e636f6dff01000100000a00080006001d0017001800100007"
	"000504616c706e000500050100000000003300260024001d00209370b2c9caa47fbabaf4559fedba753de171fa"
	"71f50f1ce15d43e994ec74d748002b0003020304000d0010000e0403050306030203080408050806002d000201"
	"01001c00024001003900320408ffffffffffffffff05048000ffff07048000ffff0801100104800075300901100f"
	"088394c8f03e51570806048000ffff";

/* RFC 9001 A.2: the protected client Initial (1200 bytes). */
static const char rfc9001_packet_hex[] =
	"c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11d242b123dc9bd8bab936b47d92ec"
	"356c0bab7df5976d27cd449f63300099f3991c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cad"
	"b8e7378c8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df621230c83711b39343fa028c"
	"ea7f7fb5ff89eac2308249a02252155e2347b63d58c5457afd84d05dfffdb20392844ae812154682e9cf012f9021"
	"a6f0be17ddd0c2084dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec4e15daf8500a"
	"6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3d"
	"d60bc8e30c5c4287e53805db059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c7b43"
	"78e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f89937f5a67258bf63ad6f1a0b1d96dbd4"
	"faddfcefc5266ba6611722395c906556be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d5411"
	"9c7468449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663ac69890f4157015853d91e923"
	"037c227a33cdd5ec281ca3f79c44546b9d90ca00f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b"
	"9c5927726632291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe5896425c5bac4aee82e57"
	"a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd14de71e6c418559302f939b0e1abd576f279c4b2e0fe"
	"b85c1f28ff18f58891ffef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198e3fc433f"
	"9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009ddc324044e847a4f4a0ab34f719595de37252d"
	"6235365e9b84392b061085349d73203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f"
	"cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450efc60ac47683d7b8d0f811365565f"
	"d98c4c8eb936bcab8d069fc33bd801b03adea2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb"
	"5e72404790a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2162f40a29f0c3c8745c0"
	"f50fba3852e566d44575c29d39a03f0cda721984b6f440591f355e12d439ff150aab7613499dbd49adabc8676eef"
	"023b15b65bfc5ca06948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e8f2e6ff58001"
	"75f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8"
	"078cdfcb3868263ff8f0940054da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab760d"
	"58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9f96f3ca9ec1dde434da7d2d392b905dd"
	"f3d1f9af93d1af5950bd493f5aa731b4056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd468"
	"40647e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241e221af44860018ab0856972e"
	"194cd934";

/* RFC 9001 A.3: the server Initial (a client sniffer must not open it). */
static const char rfc9001_server_hex[] =
	"cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a5816b6394100f37a1c69797554"
	"780bb38cc5a99f5ede4cf73c3ec2493a1839b3dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b56"
	"2bfb19fb84022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc42158407dd074ee";

/* RFC 9369 A.2: the protected v2 client Initial (1200 bytes, same plaintext as RFC 9001). */
static const char rfc9369_packet_hex[] =
	"d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485dd04de806071bf03dceebfa162e7"
	"5d6c96058bdbfb127cdfcbf903388e99ad049f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d"
	"21f57c5d250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a12834e3f249a78d395e0"
	"d18f4d766004f1a2674802a747eaa901c3f10cda5500cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea"
	"40afb6ef5253cd6818f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff3312ae50b187c1"
	"433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3d396ae5a3fb512384b2fdd851f784a65e03f2c4f"
	"be11a53c7777c023462239dd6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520bcfb"
	"7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045636e7c0c0fe4eb0f697545460c806910"
	"d2c355f1d253bc9d2452aaa549e27a1fac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de"
	"7c1216ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e54df16efaf6ddea94e2c50b4c"
	"d1dfe06017e0e9d02900cffe1935e0491d77ffb4fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb"
	"08b847741c3b8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de714d19d61370f8149"
	"748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff99c63a344d6a2ae8aa8e51b7b90a4a806105fcbca3150"
	"6c446151adfeceb51b91abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd80bf4dc8"
	"b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db848265e3e5eb72dfe8299ad7481a408322ca"
	"c55786e52f633b2fb6b614eaed18d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15"
	"c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc7e27a096d37a1a86952ec71bd89a"
	"3e9a30a2a26162984d7740f81193e8238e61f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cf"
	"a1e7071010d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b3d6758158197107c14eb"
	"b193230cd1157380aa79cae1374a7c1e5bbcb80ee23e06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6"
	"adc38b7ca7331dce8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d134b90c9058f8"
	"632c798d4490da4987307cba922d61c39805d072b589bd52fdf1e86215c2d54e6670e07383a27bbffb5addf47d66"
	"aa85a0c6f9f32e59d85a44dd5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e38d20"
	"9d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89d5974ee12e5cf7d5da4d6a31123041f3"
	"3e61407e76cffcdcfd7e19ba58cf4b536f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85"
	"cb199a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96ba18b2faa745b6fe189cf772a"
	"9f84cbfc";

/* ---- helpers ------------------------------------------------------------------------------------ */

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = strlen(s) / 2, i;

	assert_true(n <= cap);
	for (i = 0; i < n; i++) {
		unsigned v;

		assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static void assert_hex(const uint8_t *p, size_t n, const char *hex)
{
	uint8_t want[64];

	assert_int_equal(unhex(hex, want, sizeof(want)), n);
	assert_memory_equal(p, want, n);
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
	if (v < 64) {
		p[0] = (uint8_t)v;
		return 1;
	}
	if (v < 16384) {
		p[0] = 0x40 | (uint8_t)(v >> 8);
		p[1] = (uint8_t)v;
		return 2;
	}
	assert_true(v < (1u << 30));
	p[0] = 0x80 | (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
	return 4;
}

static size_t crypto_frame(uint8_t *p, uint64_t off, const uint8_t *data, size_t len)
{
	size_t n = 0;

	p[n++] = 0x06;
	n += put_varint(p + n, off);
	n += put_varint(p + n, len);
	memcpy(p + n, data, len);
	return n + len;
}

/* Seal a client Initial as a client would (RFC 9001 5.3, 5.4): header with a 2-byte Length,
 * AES-128-GCM over the payload with the header as associated data, then header protection.
 * The keys come from `key_dcid`; the header carries `dcid`. Returns the packet's length. */
static size_t seal_ex(uint8_t *out, uint32_t version, const uint8_t *key_dcid, size_t key_dcid_len,
		      const uint8_t *dcid, size_t dcid_len, uint64_t pn, size_t pn_len,
		      const uint8_t *payload, size_t plen)
{
	struct quic_keys k;
	uint8_t nonce[12], mask[16];
	size_t n = 0, pn_off, i;
	EVP_CIPHER_CTX *c;
	int len;

	assert_int_equal(quic_initial_keys(version, key_dcid, key_dcid_len, 0, &k), 0);
	out[n++] = 0xc0 | (version == QUIC_VERSION_2 ? 0x10 : 0x00) | (uint8_t)(pn_len - 1);
	out[n++] = (uint8_t)(version >> 24);
	out[n++] = (uint8_t)(version >> 16);
	out[n++] = (uint8_t)(version >> 8);
	out[n++] = (uint8_t)version;
	out[n++] = (uint8_t)dcid_len;
	memcpy(out + n, dcid, dcid_len);
	n += dcid_len;
	out[n++] = 0; /* SCID */
	out[n++] = 0; /* token */
	out[n++] = 0x40 | (uint8_t)((pn_len + plen + 16) >> 8);
	out[n++] = (uint8_t)(pn_len + plen + 16);
	pn_off = n;
	for (i = 0; i < pn_len; i++)
		out[n++] = (uint8_t)(pn >> (8 * (pn_len - 1 - i)));

	memcpy(nonce, k.iv, 12);
	for (i = 0; i < 8; i++)
		nonce[11 - i] ^= (uint8_t)(pn >> (8 * i));
	c = EVP_CIPHER_CTX_new();
	assert_non_null(c);
	assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, k.key, nonce), 1);
	assert_int_equal(EVP_EncryptUpdate(c, NULL, &len, out, (int)n), 1);
	assert_int_equal(EVP_EncryptUpdate(c, out + n, &len, payload, (int)plen), 1);
	assert_int_equal(EVP_EncryptFinal_ex(c, out + n + plen, &len), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + n + plen), 1);
	n += plen + 16;

	assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL, k.hp, NULL), 1);
	EVP_CIPHER_CTX_set_padding(c, 0);
	assert_int_equal(EVP_EncryptUpdate(c, mask, &len, out + pn_off + 4, 16), 1);
	EVP_CIPHER_CTX_free(c);
	out[0] ^= mask[0] & 0x0f;
	for (i = 0; i < pn_len; i++)
		out[pn_off + i] ^= mask[1 + i];
	return n;
}

static uint8_t dcid[8];
static size_t dcid_len;

static size_t seal(uint8_t *out, uint64_t pn, const uint8_t *payload, size_t plen)
{
	return seal_ex(out, QUIC_VERSION_1, dcid, dcid_len, dcid, dcid_len, pn, 4, payload, plen);
}

/* A payload of frames padded with PADDING so the datagram is 1200 bytes, as clients send. */
static size_t pad_payload(uint8_t *p, size_t used)
{
	size_t want = 1200 - (1 + 4 + 1 + dcid_len + 1 + 1 + 2 + 4 + 16);

	if (used < want) {
		memset(p + used, 0, want - used);
		used = want;
	}
	return used;
}

static uint8_t ffdhe_ch[2048]; /* a 1235-byte ClientHello from openssl s_client: SNI, ALPN h3 */
static size_t ffdhe_ch_len;
static uint8_t rfc_ch[256];
static size_t rfc_ch_len;

static int setup(void **state)
{
	const char *dir = getenv("XP_TEST_DATA");
	char path[512];
	FILE *f;

	(void)state;
	dcid_len = unhex(rfc_dcid_hex, dcid, sizeof(dcid));
	rfc_ch_len = unhex(rfc_ch_hex, rfc_ch, sizeof(rfc_ch));
	snprintf(path, sizeof(path), "%s/clienthello_h3_ffdhe.bin", dir ? dir : ".");
	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "cannot open %s (XP_TEST_DATA)\n", path);
		return -1;
	}
	ffdhe_ch_len = fread(ffdhe_ch, 1, sizeof(ffdhe_ch), f);
	fclose(f);
	return ffdhe_ch_len == 1235 ? 0 : -1;
}

struct dgs {
	struct xp_bytes parts[64];
	uint8_t buf[64][1500];
	uint32_t n;
};

static struct dgs *dgs_new(void)
{
	struct dgs *d = calloc(1, sizeof(*d));

	assert_non_null(d);
	return d;
}

/* Append one sealed Initial carrying `frames`, padded to 1200 bytes, as its own datagram. */
static void add_initial(struct dgs *d, uint64_t pn, const uint8_t *frames, size_t flen)
{
	uint8_t payload[1400];

	memcpy(payload, frames, flen);
	flen = pad_payload(payload, flen);
	d->parts[d->n].data = d->buf[d->n];
	d->parts[d->n].len = seal(d->buf[d->n], pn, payload, flen);
	d->n++;
}

static void add_raw(struct dgs *d, const uint8_t *p, size_t len)
{
	memcpy(d->buf[d->n], p, len);
	d->parts[d->n].data = d->buf[d->n];
	d->parts[d->n].len = len;
	d->n++;
}

static int sniff(const struct dgs *d, struct xp_sniff_result *res)
{
	memset(res, 0, sizeof(*res));
	res->size = sizeof(*res);
	return quic_sniff_parts(d->parts, d->n, res);
}

static int sniff_one(const uint8_t *p, size_t len)
{
	struct xp_bytes b = {.data = p, .len = len};
	struct xp_sniff_result res;

	return quic_sniff_parts(&b, 1, &res);
}

/* ---- RFC 9001 ----------------------------------------------------------------------------------- */

static void test_rfc9001_keys(void **state)
{
	struct quic_keys k;
	uint8_t secret[32];

	(void)state;
	assert_int_equal(quic_initial_secret(QUIC_VERSION_1, dcid, dcid_len, 0, secret), 0);
	assert_hex(secret, 32, "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea");
	assert_int_equal(quic_initial_secret(QUIC_VERSION_1, dcid, dcid_len, 1, secret), 0);
	assert_hex(secret, 32, "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b");

	assert_int_equal(quic_initial_keys(QUIC_VERSION_1, dcid, dcid_len, 0, &k), 0);
	assert_hex(k.key, 16, "1f369613dd76d5467730efcbe3b1a22d");
	assert_hex(k.iv, 12, "fa044b2f42a3fd3b46fb255c");
	assert_hex(k.hp, 16, "9f50449e04a0e810283a1e9933adedd2");
	assert_int_equal(quic_initial_keys(QUIC_VERSION_1, dcid, dcid_len, 1, &k), 0);
	assert_hex(k.key, 16, "cf3a5331653c364c88f0f379b6067e37");
	assert_hex(k.iv, 12, "0ac1493ca1905853b0bba03e");
	assert_hex(k.hp, 16, "c206b8d9b9f0f37644430b490eeaa314");

	/* no salt for other versions; connection IDs are at most 20 bytes */
	assert_int_equal(quic_initial_keys(0xff00001d, dcid, dcid_len, 0, &k), -1);
	assert_int_equal(quic_initial_keys(QUIC_VERSION_1, ffdhe_ch, 21, 0, &k), -1);
}

/* The RFC packet opens to pn 2 and 1162 bytes: a CRYPTO frame with the RFC's ClientHello, then
 * PADDING; and the sealer rebuilds it byte for byte from that plaintext. */
static void test_rfc9001_packet(void **state)
{
	static struct quic_work w;
	uint8_t pkt[1200], again[1300], payload[1200];
	const uint8_t *plain;
	struct quic_long h;
	struct quic_keys k;
	size_t n, plen;
	uint64_t pn;

	(void)state;
	assert_int_equal(unhex(rfc9001_packet_hex, pkt, sizeof(pkt)), 1200);
	assert_int_equal(quic_parse_long(pkt, sizeof(pkt), &h), 0);
	assert_int_equal(h.version, QUIC_VERSION_1);
	assert_int_equal(h.type, QUIC_PT_INITIAL);
	assert_int_equal(h.dcid_len, 8);
	assert_int_equal(h.pn_off, 18);
	assert_int_equal(h.len, 1200);

	assert_int_equal(quic_initial_keys(QUIC_VERSION_1, dcid, dcid_len, 0, &k), 0);
	assert_int_equal(quic_open(&k, pkt, &h, w.buf, sizeof(w.buf), &plain, &plen, &pn), 0);
	assert_int_equal(pn, 2);
	assert_int_equal(plen, 1162);
	quic_stream_init(&w.stream);
	assert_int_equal(quic_frames(plain, plen, &w.stream), 0);
	assert_int_equal(w.stream.contig, rfc_ch_len);
	assert_memory_equal(w.stream.data, rfc_ch, rfc_ch_len);

	/* the server's keys do not open the client's packet */
	assert_int_equal(quic_initial_keys(QUIC_VERSION_1, dcid, dcid_len, 1, &k), 0);
	assert_int_equal(quic_open(&k, pkt, &h, w.buf, sizeof(w.buf), &plain, &plen, &pn), -1);

	n = crypto_frame(payload, 0, rfc_ch, rfc_ch_len);
	memset(payload + n, 0, 1162 - n);
	n = seal_ex(again, QUIC_VERSION_1, dcid, dcid_len, dcid, dcid_len, 2, 4, payload, 1162);
	assert_int_equal(n, 1200);
	assert_memory_equal(again, pkt, 1200);
}

static void test_rfc9001_sniff(void **state)
{
	struct xp_bytes b;
	struct xp_sniff_result res = {.size = sizeof(res)};
	uint8_t pkt[1200];

	(void)state;
	b.data = pkt;
	b.len = unhex(rfc9001_packet_hex, pkt, sizeof(pkt));
	assert_int_equal(quic_sniff_parts(&b, 1, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "example.com");
	assert_string_equal(res.protocol, "quic");
	assert_string_equal(res.alpn, "alpn"); /* the RFC's ClientHello offers "alpn" */
}

/* A server Initial is never opened with client keys: NOT_MINE. */
static void test_rfc9001_server_initial(void **state)
{
	uint8_t pkt[200];
	size_t n;

	(void)state;
	n = unhex(rfc9001_server_hex, pkt, sizeof(pkt));
	assert_int_equal(sniff_one(pkt, n), XP_SNIFF_NOT_MINE);
}

/* ---- RFC 9369 ----------------------------------------------------------------------------------- */

static void test_rfc9369_keys(void **state)
{
	struct quic_keys k;
	uint8_t secret[32];

	(void)state;
	assert_int_equal(quic_initial_secret(QUIC_VERSION_2, dcid, dcid_len, 0, secret), 0);
	assert_hex(secret, 32, "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b");
	assert_int_equal(quic_initial_secret(QUIC_VERSION_2, dcid, dcid_len, 1, secret), 0);
	assert_hex(secret, 32, "0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1");
	assert_int_equal(quic_initial_keys(QUIC_VERSION_2, dcid, dcid_len, 0, &k), 0);
	assert_hex(k.key, 16, "8b1a0bc121284290a29e0971b5cd045d");
	assert_hex(k.iv, 12, "91f73e2351d8fa91660e909f");
	assert_hex(k.hp, 16, "45b95e15235d6f45a6b19cbcb0294ba9");
	assert_int_equal(quic_initial_keys(QUIC_VERSION_2, dcid, dcid_len, 1, &k), 0);
	assert_hex(k.key, 16, "82db637861d55e1d011f19ea71d5d2a7");
	assert_hex(k.iv, 12, "dd13c276499c0249d3310652");
	assert_hex(k.hp, 16, "edf6d05c83121201b436e16877593c3a");
}

static void test_rfc9369_packet(void **state)
{
	struct xp_sniff_result res = {.size = sizeof(res)};
	uint8_t pkt[1200], again[1300], payload[1200];
	struct xp_bytes b = {.data = pkt};
	struct quic_long h;
	size_t n;

	(void)state;
	b.len = unhex(rfc9369_packet_hex, pkt, sizeof(pkt));
	assert_int_equal(b.len, 1200);
	assert_int_equal(quic_parse_long(pkt, b.len, &h), 0);
	assert_int_equal(h.type, QUIC_PT_INITIAL); /* wire type bits 01 in v2 */
	assert_int_equal(quic_sniff_parts(&b, 1, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "example.com");
	assert_string_equal(res.protocol, "quic");

	n = crypto_frame(payload, 0, rfc_ch, rfc_ch_len);
	memset(payload + n, 0, 1162 - n);
	n = seal_ex(again, QUIC_VERSION_2, dcid, dcid_len, dcid, dcid_len, 2, 4, payload, 1162);
	assert_memory_equal(again, pkt, 1200);

	/* v2 bytes labelled v1 (or v1 labelled v2): other keys, other type bits: NOT_MINE */
	pkt[1] = 0x00, pkt[2] = 0x00, pkt[3] = 0x00, pkt[4] = 0x01;
	assert_int_equal(quic_sniff_parts(&b, 1, &res), XP_SNIFF_NOT_MINE);
	unhex(rfc9001_packet_hex, pkt, sizeof(pkt));
	pkt[1] = 0x6b, pkt[2] = 0x33, pkt[3] = 0x43, pkt[4] = 0xcf;
	assert_int_equal(quic_sniff_parts(&b, 1, &res), XP_SNIFF_NOT_MINE);
	/* an unknown version (draft-29) is not ours */
	unhex(rfc9001_packet_hex, pkt, sizeof(pkt));
	pkt[1] = 0xff, pkt[2] = 0x00, pkt[3] = 0x00, pkt[4] = 0x1d;
	assert_int_equal(quic_sniff_parts(&b, 1, &res), XP_SNIFF_NOT_MINE);
}

/* ---- reassembly ---------------------------------------------------------------------------------- */

/* A 1235-byte ClientHello does not fit one 1200-byte datagram: two Initials, the second first. */
static void test_two_packets_out_of_order(void **state)
{
	struct xp_sniff_result res;
	struct dgs *d = dgs_new();
	uint8_t f1[1400], f2[1400];
	size_t n1, n2, cut = 700;

	(void)state;
	n1 = crypto_frame(f1, 0, ffdhe_ch, cut);
	n2 = crypto_frame(f2, cut, ffdhe_ch + cut, ffdhe_ch_len - cut);

	add_initial(d, 1, f2, n2);
	assert_int_equal(sniff(d, &res), XP_SNIFF_MORE); /* a hole at offset 0 */
	add_initial(d, 0, f1, n1);
	assert_int_equal(sniff(d, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "www.example.org");
	assert_string_equal(res.alpn, "h3");
	assert_string_equal(res.protocol, "quic");

	/* in order, the first alone is a prefix: MORE */
	d->n = 0;
	add_initial(d, 0, f1, n1);
	assert_int_equal(sniff(d, &res), XP_SNIFF_MORE);
	add_initial(d, 1, f2, n2);
	assert_int_equal(sniff(d, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "www.example.org");
	free(d);
}

/* Retransmissions overlap: the same bytes again are fine, different bytes at an offset are not. */
static void test_overlap(void **state)
{
	struct xp_sniff_result res;
	struct dgs *d = dgs_new();
	uint8_t f[1400], evil[1400];
	size_t n;

	(void)state;
	/* [0, 600) and [400, 1000) in one packet, [900, end) and [0, 100) in a second one */
	n = crypto_frame(f, 0, ffdhe_ch, 600);
	n += crypto_frame(f + n, 400, ffdhe_ch + 400, 600);
	add_initial(d, 0, f, n);
	n = crypto_frame(f, 900, ffdhe_ch + 900, ffdhe_ch_len - 900);
	n += crypto_frame(f + n, 0, ffdhe_ch, 100);
	add_initial(d, 1, f, n);
	assert_int_equal(sniff(d, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "www.example.org");

	/* the whole first packet again (a retransmission) changes nothing */
	add_raw(d, d->buf[0], d->parts[0].len);
	assert_int_equal(sniff(d, &res), XP_SNIFF_FOUND);

	/* a byte that changes on resend: NOT_MINE */
	d->n = 1;
	memcpy(evil, ffdhe_ch + 400, 300);
	evil[150] ^= 0x20;
	n = crypto_frame(f, 400, evil, 300);
	add_initial(d, 1, f, n);
	assert_int_equal(sniff(d, &res), XP_SNIFF_NOT_MINE);
	free(d);
}

/* Coalesced: two Initials in one datagram, then a 0-RTT packet, then zero padding. */
static void test_coalesced(void **state)
{
	struct xp_sniff_result res;
	struct dgs *d = dgs_new();
	uint8_t f[1400], dg[1500], zrtt[64];
	size_t n, len = 0;

	(void)state;
	n = crypto_frame(f, 0, ffdhe_ch, 600);
	len += seal(dg + len, 0, f, n);
	n = crypto_frame(f, 600, ffdhe_ch + 600, ffdhe_ch_len - 600);
	len += seal(dg + len, 1, f, n);
	/* 0-RTT: type bits 01, a Length covering 40 opaque bytes */
	memcpy(zrtt, dg, 14);
	zrtt[0] = 0xd0;
	zrtt[14] = 0;	 /* SCID length: the sealed header's */
	zrtt[15] = 0x40; /* Length 40, no token field */
	zrtt[16] = 40;
	memset(zrtt + 17, 0xa5, 40);
	memcpy(dg + len, zrtt, 57);
	len += 57;
	assert_true(len < 1450);
	memset(dg + len, 0, 1450 - len);
	len = 1450;
	add_raw(d, dg, len);
	assert_int_equal(sniff(d, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "www.example.org");
	free(d);
}

/* After the server's first Initial the client addresses the server's connection ID, but Initial
 * keys still come from the original DCID (RFC 9001 5.2). */
static void test_dcid_switch(void **state)
{
	static const uint8_t server_cid[] = {0xf0, 0x67, 0xa5, 0x50, 0x2a, 0x42, 0x62, 0xb5};
	struct xp_sniff_result res;
	struct dgs *d = dgs_new();
	uint8_t f[1400], payload[1400];
	size_t n;

	(void)state;
	n = crypto_frame(f, 0, ffdhe_ch, 700);
	add_initial(d, 0, f, n);
	n = crypto_frame(payload, 700, ffdhe_ch + 700, ffdhe_ch_len - 700);
	n = pad_payload(payload, n);
	d->parts[1].data = d->buf[1];
	d->parts[1].len = seal_ex(d->buf[1], QUIC_VERSION_1, dcid, dcid_len, server_cid,
				  sizeof(server_cid), 1, 2, payload, n);
	d->n = 2;
	assert_int_equal(sniff(d, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "www.example.org");
	free(d);
}

/* ---- bad input ----------------------------------------------------------------------------------- */

/* Every prefix of the RFC packet, and every prefix of a split hello's second datagram. */
static void test_truncated(void **state)
{
	struct xp_sniff_result res;
	struct dgs *d = dgs_new();
	uint8_t pkt[1200], f[1400];
	size_t len, n;

	(void)state;
	unhex(rfc9001_packet_hex, pkt, sizeof(pkt));
	for (len = 0; len < sizeof(pkt); len++)
		assert_int_equal(sniff_one(pkt, len), XP_SNIFF_NOT_MINE);

	n = crypto_frame(f, 0, ffdhe_ch, 700);
	add_initial(d, 0, f, n);
	n = crypto_frame(f, 700, ffdhe_ch + 700, ffdhe_ch_len - 700);
	add_initial(d, 1, f, n);
	for (len = 0; len < d->parts[1].len; len += 7) {
		d->parts[1].len = len; /* a cut datagram is skipped: still waiting */
		assert_int_equal(sniff(d, &res), XP_SNIFF_MORE);
	}
	free(d);
}

/* Bounds: a hello longer than 64 KiB, CRYPTO data past 64 KiB, too many datagrams. */
static void test_oversized(void **state)
{
	struct xp_sniff_result res;
	struct dgs *d = dgs_new();
	uint8_t f[1400], hdr[4] = {0x01, 0x01, 0x00, 0x00}; /* client_hello of 65536 bytes */
	uint32_t i;
	size_t n;

	(void)state;
	n = crypto_frame(f, 0, hdr, 4);
	add_initial(d, 0, f, n);
	n = crypto_frame(f, 4, ffdhe_ch + 4, 1000);
	add_initial(d, 1, f, n);
	assert_int_equal(sniff(d, &res), XP_SNIFF_NOT_MINE);

	/* data beyond the stream bound is dropped, not stored: the hello still parses */
	d->n = 0;
	n = crypto_frame(f, QUIC_CRYPTO_MAX - 10, ffdhe_ch, 100);
	n += crypto_frame(f + n, (UINT64_C(1) << 30) - 200, ffdhe_ch, 100);
	add_initial(d, 0, f, n);
	n = crypto_frame(f, 0, rfc_ch, rfc_ch_len);
	add_initial(d, 1, f, n);
	assert_int_equal(sniff(d, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "example.com");

	/* a first half, then Initials that only PING until the datagram bound: NOT_MINE */
	d->n = 0;
	n = crypto_frame(f, 0, ffdhe_ch, 700);
	add_initial(d, 0, f, n);
	for (i = 1; i < QUIC_MAX_DATAGRAMS - 1; i++) {
		f[0] = 0x01;
		add_initial(d, i, f, 1);
	}
	assert_int_equal(sniff(d, &res), XP_SNIFF_MORE);
	f[0] = 0x01;
	add_initial(d, i, f, 1);
	assert_int_equal(sniff(d, &res), XP_SNIFF_NOT_MINE);
	/* the rest beyond the bound is never looked at */
	n = crypto_frame(f, 700, ffdhe_ch + 700, ffdhe_ch_len - 700);
	add_initial(d, i + 1, f, n);
	assert_int_equal(sniff(d, &res), XP_SNIFF_NOT_MINE);

	/* a datagram larger than the byte bound (64 KiB) */
	{
		uint8_t *big = calloc(1, QUIC_SNIFF_MAX_BYTES + 100);

		assert_non_null(big);
		memcpy(big, d->buf[0], d->parts[0].len);
		assert_int_equal(sniff_one(big, QUIC_SNIFF_MAX_BYTES + 100), XP_SNIFF_NOT_MINE);
		free(big);
	}
	free(d);
}

static uint32_t lcg = 12345;

static uint8_t rnd(void)
{
	lcg = lcg * 1103515245u + 12345u;
	return (uint8_t)(lcg >> 16);
}

/* Random bytes, random bytes dressed as a v1 Initial, a DNS query, a short header, version
 * negotiation: none is QUIC we can read. */
static void test_garbage(void **state)
{
	static const uint8_t dns[] = {0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
				      0x00, 0x00, 0x00, 0x07, 'e',  'x',  'a',  'm',  'p',
				      'l',  'e',  0x03, 'c',  'o',  'm',  0x00, 0x00, 0x01,
				      0x00, 0x01};
	static const uint8_t vn[] = {0xc5, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0,
				     0x00, 0x00, 0x00, 0x01, 0x6b, 0x33, 0x43, 0xcf};
	uint8_t buf[1300];
	size_t i, len;
	int round;

	(void)state;
	assert_int_equal(sniff_one(dns, sizeof(dns)), XP_SNIFF_NOT_MINE);
	assert_int_equal(sniff_one(vn, sizeof(vn)), XP_SNIFF_NOT_MINE);
	for (round = 0; round < 300; round++) {
		len = 1 + rnd() % 4 * 300 + rnd();
		for (i = 0; i < len; i++)
			buf[i] = rnd();
		if ((round & 1) && len >= 40) {
			/* a plausible header: v1 Initial, 8-byte DCID, no token, Length that fits */
			memcpy(buf, "\xc3\x00\x00\x00\x01\x08", 6);
			buf[14] = 0;
			buf[15] = 0;
			buf[16] = 0x40 | (uint8_t)((len - 18) >> 8);
			buf[17] = (uint8_t)(len - 18);
		}
		if (round % 3 == 0)
			buf[0] &= 0x7f; /* short header */
		assert_int_equal(sniff_one(buf, len), XP_SNIFF_NOT_MINE);
	}
}

/* One flipped bit anywhere the tag covers (header, ciphertext, tag): NOT_MINE. */
static void test_bad_tag(void **state)
{
	static const size_t at[] = {0, 5, 9, 17, 18, 25, 100, 600, 1183, 1199};
	uint8_t pkt[1200];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		unhex(rfc9001_packet_hex, pkt, sizeof(pkt));
		pkt[at[i]] ^= 0x01;
		assert_int_equal(sniff_one(pkt, sizeof(pkt)), XP_SNIFF_NOT_MINE);
	}
	/* and the untouched packet still opens */
	unhex(rfc9001_packet_hex, pkt, sizeof(pkt));
	assert_int_equal(sniff_one(pkt, sizeof(pkt)), XP_SNIFF_FOUND);
}

/* Lengths that lie: in the header (Length, token length, CID length), and inside an
 * authenticated payload (CRYPTO length, ACK range count, CONNECTION_CLOSE reason). */
static void test_lying_lengths(void **state)
{
	struct xp_sniff_result res;
	struct dgs *d = dgs_new();
	uint8_t pkt[1300], f[1400];
	size_t n;

	(void)state;
	unhex(rfc9001_packet_hex, pkt, sizeof(pkt));
	pkt[16] = 0x9f; /* Length 1183: one byte more than the datagram */
	assert_int_equal(sniff_one(pkt, 1200), XP_SNIFF_NOT_MINE);
	pkt[16] = 0x9d; /* Length 1181: the tag moves, it no longer verifies */
	assert_int_equal(sniff_one(pkt, 1200), XP_SNIFF_NOT_MINE);
	unhex(rfc9001_packet_hex, pkt, sizeof(pkt));
	pkt[15] = 0x7f; /* token length 0x3f449e... well past the datagram */
	assert_int_equal(sniff_one(pkt, 1200), XP_SNIFF_NOT_MINE);
	unhex(rfc9001_packet_hex, pkt, sizeof(pkt));
	pkt[5] = 21; /* DCID longer than QUIC allows */
	assert_int_equal(sniff_one(pkt, 1200), XP_SNIFF_NOT_MINE);
	pkt[5] = 0xff;
	assert_int_equal(sniff_one(pkt, 1200), XP_SNIFF_NOT_MINE);

	/* CRYPTO whose length runs past the payload (no padding after it) */
	n = crypto_frame(f, 0, rfc_ch, rfc_ch_len);
	f[2] = 0x40, f[3] = 0xf2; /* claims 242 bytes, 241 follow */
	d->parts[0].data = d->buf[0];
	d->parts[0].len = seal(d->buf[0], 0, f, n);
	d->n = 1;
	assert_int_equal(sniff(d, &res), XP_SNIFF_NOT_MINE);

	/* ACK claiming more ranges than there are bytes */
	d->n = 0;
	n = 0;
	f[n++] = 0x02, f[n++] = 0x05, f[n++] = 0x00, f[n++] = 0x80, f[n++] = 0xff, f[n++] = 0xff,
	f[n++] = 0xff, f[n++] = 0x00;
	/* sealed without padding: zero bytes after it would be read as ranges */
	d->parts[0].data = d->buf[0];
	d->parts[0].len = seal(d->buf[0], 0, f, n);
	d->n = 1;
	assert_int_equal(sniff(d, &res), XP_SNIFF_NOT_MINE);

	/* CONNECTION_CLOSE with a reason longer than the payload */
	d->n = 0;
	n = 0;
	f[n++] = 0x1c, f[n++] = 0x0a, f[n++] = 0x00, f[n++] = 0x20, f[n++] = 'x';
	d->parts[0].data = d->buf[0];
	d->parts[0].len = seal(d->buf[0], 0, f, n);
	d->n = 1;
	assert_int_equal(sniff(d, &res), XP_SNIFF_NOT_MINE);
	free(d);
}

/* ACK (with ranges and ECN), PING and CONNECTION_CLOSE are allowed around CRYPTO; STREAM,
 * NEW_TOKEN, application CONNECTION_CLOSE and unknown frames are not. */
static void test_frames(void **state)
{
	static const uint8_t forbidden[] = {0x04, 0x07, 0x08, 0x0f, 0x10, 0x18, 0x1d, 0x1e, 0x30};
	struct xp_sniff_result res;
	struct dgs *d = dgs_new();
	uint8_t f[1400];
	size_t n, i;

	(void)state;
	n = 0;
	f[n++] = 0x01;							 /* PING */
	f[n++] = 0x03, f[n++] = 0x09, f[n++] = 0x01, f[n++] = 0x02, f[n++] = 0x00; /* ACK_ECN */
	f[n++] = 0x01, f[n++] = 0x02, f[n++] = 0x01, f[n++] = 0x02;		 /* 2 ranges */
	f[n++] = 0x03, f[n++] = 0x00, f[n++] = 0x00;				 /* ECN */
	f[n++] = 0x1c, f[n++] = 0x00, f[n++] = 0x06, f[n++] = 0x02, f[n++] = 'o', f[n++] = 'k';
	n += crypto_frame(f + n, 0, rfc_ch, rfc_ch_len);
	f[n++] = 0x02, f[n++] = 0x40, f[n++] = 0x10, f[n++] = 0x00, f[n++] = 0x00, f[n++] = 0x03;
	add_initial(d, 0, f, n);
	assert_int_equal(sniff(d, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "example.com");

	for (i = 0; i < sizeof(forbidden); i++) {
		d->n = 0;
		n = crypto_frame(f, 0, rfc_ch, rfc_ch_len);
		f[n++] = forbidden[i];
		f[n++] = 0x00;
		f[n++] = 0x00;
		add_initial(d, 0, f, n);
		assert_int_equal(sniff(d, &res), XP_SNIFF_NOT_MINE);
	}
	/* an empty payload (only possible once padding is gone) is a protocol violation */
	d->n = 1;
	d->parts[0].len = seal(d->buf[0], 0, f, 0);
	assert_int_equal(sniff(d, &res), XP_SNIFF_NOT_MINE);
	free(d);
}

/* What comes first decides: a first datagram that is not a client Initial is NOT_MINE; later
 * datagrams that do not open (injected, server's, noise) are skipped. */
static void test_first_datagram(void **state)
{
	struct xp_sniff_result res;
	struct dgs *d = dgs_new();
	uint8_t f[1400], noise[300];
	size_t n, i;

	(void)state;
	for (i = 0; i < sizeof(noise); i++)
		noise[i] = rnd();
	add_raw(d, noise, sizeof(noise));
	n = crypto_frame(f, 0, rfc_ch, rfc_ch_len);
	add_initial(d, 0, f, n);
	assert_int_equal(sniff(d, &res), XP_SNIFF_NOT_MINE);

	d->n = 0;
	n = crypto_frame(f, 0, ffdhe_ch, 700);
	add_initial(d, 0, f, n);
	add_raw(d, noise, sizeof(noise));
	n = crypto_frame(f, 700, ffdhe_ch + 700, ffdhe_ch_len - 700);
	add_initial(d, 1, f, n);
	assert_int_equal(sniff(d, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "www.example.org");

	assert_int_equal(quic_sniff_parts(NULL, 0, &res), XP_SNIFF_MORE);
	free(d);
}

/* A ClientHello without server_name has no name to route by. */
static void test_no_sni(void **state)
{
	struct xp_sniff_result res;
	struct dgs *d = dgs_new();
	uint8_t ch[256], f[1400];
	size_t n;

	(void)state;
	memcpy(ch, rfc_ch, rfc_ch_len);
	/* the server_name extension starts at 0x31 (type 0x0000): make it an unknown type */
	assert_int_equal(ch[0x31], 0x00);
	assert_int_equal(ch[0x32], 0x00);
	assert_int_equal(ch[0x39], 0x0b);
	ch[0x31] = 0x7a, ch[0x32] = 0x7a;
	n = crypto_frame(f, 0, ch, rfc_ch_len);
	add_initial(d, 0, f, n);
	assert_int_equal(sniff(d, &res), XP_SNIFF_NOT_MINE);
	free(d);
}

/* Through the descriptor, as the daemon calls it. */
static void test_plugin(void **state)
{
	const struct xp_plugin_desc *desc = xp_plugin_query(XP_PLUGIN_ABI);
	struct xp_sniff_result res = {.size = sizeof(res)};
	struct xp_sniff_input in = {.size = sizeof(in), .l4proto = IPPROTO_UDP, .dport = 443};
	uint8_t pkt[1200];
	struct xp_bytes b = {.data = pkt, .len = sizeof(pkt)};
	const uint16_t *p;
	int has443 = 0;

	(void)state;
	assert_non_null(desc);
	assert_string_equal(desc->name, "quic");
	assert_int_equal(desc->kinds, XP_KIND_SNIFFER);
	assert_non_null(desc->sniffer);
	assert_int_equal(desc->sniffer->caps, XP_SNIFF_UDP);
	assert_true(desc->sniffer->max_bytes >= 1200 && desc->sniffer->max_bytes <= 65536);
	for (p = desc->sniffer->ports; *p; p++)
		has443 |= *p == 443;
	assert_true(has443);

	unhex(rfc9001_packet_hex, pkt, sizeof(pkt));
	in.count = 1;
	in.parts = &b;
	assert_int_equal(desc->sniffer->sniff(NULL, &in, &res), XP_SNIFF_FOUND);
	assert_string_equal(res.name, "example.com");
	in.l4proto = IPPROTO_TCP;
	assert_int_equal(desc->sniffer->sniff(NULL, &in, &res), XP_SNIFF_NOT_MINE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc9001_keys),
		cmocka_unit_test(test_rfc9001_packet),
		cmocka_unit_test(test_rfc9001_sniff),
		cmocka_unit_test(test_rfc9001_server_initial),
		cmocka_unit_test(test_rfc9369_keys),
		cmocka_unit_test(test_rfc9369_packet),
		cmocka_unit_test(test_two_packets_out_of_order),
		cmocka_unit_test(test_overlap),
		cmocka_unit_test(test_coalesced),
		cmocka_unit_test(test_dcid_switch),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_bad_tag),
		cmocka_unit_test(test_lying_lengths),
		cmocka_unit_test(test_frames),
		cmocka_unit_test(test_first_datagram),
		cmocka_unit_test(test_no_sni),
		cmocka_unit_test(test_plugin),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
