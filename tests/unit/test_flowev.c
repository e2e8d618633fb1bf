/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * test_flowev - XP_EVENT_FLOW_NAMED as plugins receive it: the event built from a connection's
 * info (flowev_fill), and flowev_named's delivery: nothing without a subscriber, a copy of the
 * strings through the main loop with one.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "flowev.h"
#include "loop.h"

static struct xp_conn_info info_of(uint8_t route, const char *ob, const char *dom,
				   const char *sniffer)
{
	struct xp_conn_info i = {.size = sizeof(i), .l4proto = IPPROTO_TCP};

	i.client.in.sin_family = AF_INET;
	i.client.in.sin_port = htons(40000);
	inet_pton(AF_INET, "10.0.0.2", &i.client.in.sin_addr);
	i.dst.in.sin_family = AF_INET;
	i.dst.in.sin_port = htons(443);
	inet_pton(AF_INET, "10.1.5.2", &i.dst.in.sin_addr);
	i.route = route;
	i.source = XP_SOURCE_RULE;
	i.rule_id = 7;
	i.outbound = ob;
	i.domain = dom;
	i.sniffer = sniffer;
	i.from_host = 1;
	return i;
}

static void test_fill(void **state)
{
	struct xp_conn_info i = info_of(XP_ROUTE_PROXY, "tunnel", "a.example", "tls");
	struct xp_event ev;

	flowev_fill(&ev, &i, 1234);
	assert_int_equal(ev.size, sizeof(ev));
	assert_true(ev.size >= offsetof(struct xp_event, sniffer) + sizeof(ev.sniffer));
	assert_int_equal(ev.type, XP_EVENT_FLOW_NAMED);
	assert_int_equal(ev.ts_ms, 1234);
	assert_int_equal(ev.l4proto, IPPROTO_TCP);
	assert_memory_equal(&ev.src, &i.client, sizeof(ev.src));
	assert_memory_equal(&ev.dst, &i.dst, sizeof(ev.dst));
	assert_int_equal(ev.route, XP_ROUTE_PROXY);
	assert_int_equal(ev.source, XP_SOURCE_RULE);
	assert_int_equal(ev.rule_id, 7);
	assert_int_equal(ev.from_host, 1);
	assert_int_equal(ev.ifindex, 0);
	assert_int_equal(ev.tag, 0);
	assert_int_equal(ev.drop_reason, 0);
	assert_string_equal(ev.outbound, "tunnel");
	assert_string_equal(ev.domain, "a.example");
	assert_string_equal(ev.sniffer, "tls");

	/* DIRECT: the outbound the core relays through is not a PROXY outbound: NULL */
	i = info_of(XP_ROUTE_DIRECT, "direct0", "b.example", NULL);
	flowev_fill(&ev, &i, 0);
	assert_null(ev.outbound);
	assert_string_equal(ev.domain, "b.example");
	assert_null(ev.sniffer); /* a DNS name: nobody sniffed it */

	/* no name: no sniffer either, even if one was recorded; "" is no name */
	i = info_of(XP_ROUTE_BLOCK, NULL, "", "tls");
	flowev_fill(&ev, &i, 0);
	assert_null(ev.domain);
	assert_null(ev.sniffer);
	assert_int_equal(ev.route, XP_ROUTE_BLOCK);
}

static int delivered;
static char got_domain[256], got_sniffer[32], got_outbound[64];

static void sink(const struct xp_event *ev)
{
	delivered++;
	strcpy(got_domain, ev->domain ? ev->domain : "-");
	strcpy(got_sniffer, ev->sniffer ? ev->sniffer : "-");
	strcpy(got_outbound, ev->outbound ? ev->outbound : "-");
}

static void test_delivery(void **state)
{
	struct xp_loop main_loop;
	char dom[64] = "c.example", ob[32] = "tunnel";
	struct xp_conn_info i = info_of(XP_ROUTE_PROXY, ob, dom, "http_sniff");

	assert_int_equal(loop_init(&main_loop, 0, true, "main"), 0);
	flowev_set_sink(sink);
	/* nobody subscribed: nothing is posted */
	flowev_set_wanted(false);
	assert_false(flowev_wanted());
	flowev_named("test", &i);
	loop_fini(&main_loop); /* runs whatever was posted */
	assert_int_equal(delivered, 0);

	assert_int_equal(loop_init(&main_loop, 0, true, "main"), 0);
	flowev_set_wanted(true);
	flowev_named("test", &i);
	/* the caller's strings may change right after: the event carries copies */
	strcpy(dom, "changed");
	strcpy(ob, "changed");
	loop_fini(&main_loop);
	assert_int_equal(delivered, 1);
	assert_string_equal(got_domain, "c.example");
	assert_string_equal(got_outbound, "tunnel");
	assert_string_equal(got_sniffer, "http_sniff");

	/* the sink removed (shutdown): a posted event is freed undelivered */
	assert_int_equal(loop_init(&main_loop, 0, true, "main"), 0);
	flowev_named("test", &i);
	flowev_set_sink(NULL);
	loop_fini(&main_loop);
	assert_int_equal(delivered, 1);
	flowev_set_wanted(false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fill),
		cmocka_unit_test(test_delivery),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
