// SPDX-License-Identifier: GPL-2.0

#include <linux/io.h>
#include <linux/mm.h>
#include <linux/module.h>

/* Helpers for the Rust Live Update Orchestrator and its abstractions. */

__rust_helper phys_addr_t rust_helper_virt_to_phys(void *addr)
{
	return virt_to_phys(addr);
}

__rust_helper void *rust_helper_phys_to_virt(phys_addr_t addr)
{
	return phys_to_virt(addr);
}

__rust_helper bool rust_helper_try_module_get(struct module *module)
{
	return try_module_get(module);
}

__rust_helper void rust_helper_module_put(struct module *module)
{
	module_put(module);
}

__rust_helper void rust_helper_folio_put(struct folio *folio)
{
	folio_put(folio);
}

__rust_helper void *rust_helper_folio_address(const struct folio *folio)
{
	return folio_address(folio);
}

__rust_helper unsigned int rust_helper_folio_order(const struct folio *folio)
{
	return folio_order(folio);
}
