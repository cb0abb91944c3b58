//! The rows themselves: pure functions of the seed and the row's index (plus, for orders, the users
//! and products they refer to). Nothing here touches the database.

use chrono::{DateTime, Utc};
use uuid::{Builder, Uuid};

use super::rng::Rng;

/// The fixed "now" of generated data, 2026-11-01T00:00:00Z in Unix milliseconds: the same seed
/// gives the same rows whatever the date of the run.
pub const ANCHOR_MS: i64 = 1_793_491_200_000;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const HOUR_MS: i64 = 60 * 60 * 1000;
const MINUTE_MS: i64 = 60 * 1000;

/// Products are created over the two years before the anchor.
const PRODUCT_SPAN_MS: i64 = 730 * DAY_MS;
/// Orders are placed over the year before the anchor.
const ORDER_SPAN_MS: i64 = 365 * DAY_MS;

/// The stream kinds of [`Rng::stream`].
const PRODUCT_STREAM: u64 = 0x5052_4F44; // "PROD"
const ORDER_STREAM: u64 = 0x4F52_4452; // "ORDR"

/// The most lines of a generated order.
pub const MAX_LINES: usize = 5;

/// A UUIDv7 for `ms` whose other bits come from `rng`.
pub fn uuid_v7(ms: i64, rng: &mut Rng) -> Uuid {
    Builder::from_unix_timestamp_millis(ms.max(0) as u64, &rng.bytes10()).into_uuid()
}

/// Unix milliseconds as a timestamp (`ms` is always within chrono's range here).
pub fn timestamp(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// One generated product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRow {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price_minor: i64,
    pub currency: &'static str,
    pub stock: i32,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const ADJECTIVES: [&str; 30] = [
    "Classic",
    "Compact",
    "Modern",
    "Rustic",
    "Vintage",
    "Minimalist",
    "Ergonomic",
    "Portable",
    "Handcrafted",
    "Deluxe",
    "Everyday",
    "Nordic",
    "Industrial",
    "Slim",
    "Heavy-Duty",
    "Cozy",
    "Sleek",
    "Foldable",
    "Artisan",
    "Premium",
    "Lightweight",
    "Weatherproof",
    "Stackable",
    "Adjustable",
    "Essential",
    "Studio",
    "Heritage",
    "Urban",
    "Coastal",
    "Alpine",
];

const MATERIALS: [&str; 24] = [
    "Walnut",
    "Oak",
    "Bamboo",
    "Steel",
    "Brass",
    "Copper",
    "Ceramic",
    "Linen",
    "Wool",
    "Leather",
    "Cotton",
    "Marble",
    "Glass",
    "Cork",
    "Aluminum",
    "Concrete",
    "Teak",
    "Canvas",
    "Felt",
    "Porcelain",
    "Stoneware",
    "Rattan",
    "Cast Iron",
    "Titanium",
];

const NOUNS: [&str; 40] = [
    "Desk Lamp",
    "Coffee Mug",
    "Cutting Board",
    "Bookshelf",
    "Throw Blanket",
    "Water Bottle",
    "Backpack",
    "Notebook Cover",
    "Plant Pot",
    "Wall Clock",
    "Serving Bowl",
    "Lounge Chair",
    "Side Table",
    "Pen Holder",
    "Candle Holder",
    "Picture Frame",
    "Tote Bag",
    "Wallet",
    "Headphone Stand",
    "Laptop Sleeve",
    "Keyboard Tray",
    "Coaster Set",
    "Teapot",
    "French Press",
    "Floor Lamp",
    "Storage Box",
    "Wall Mirror",
    "Bar Stool",
    "Vase",
    "Doormat",
    "Pillow Cover",
    "Watch Strap",
    "Phone Stand",
    "Spice Rack",
    "Salad Bowl",
    "Knife Block",
    "Bread Box",
    "Desk Organizer",
    "Entryway Bench",
    "Shelf Bracket",
];

const COLOURS: [&str; 12] = [
    "Charcoal",
    "Sand",
    "Forest Green",
    "Navy",
    "Terracotta",
    "Natural",
    "Slate",
    "Ivory",
    "Black",
    "Sage",
    "Mustard",
    "Dusty Rose",
];

const FEATURES: [&str; 12] = [
    "Built to last through years of daily use.",
    "Ships fully assembled and ready to use.",
    "Each piece is finished by hand, so no two are quite alike.",
    "Designed in-house and made in small batches.",
    "Light enough to move around, sturdy enough to stay put.",
    "A quiet, timeless shape that fits any room.",
    "Made with responsibly sourced materials.",
    "Packed in plastic-free, recyclable packaging.",
    "Tested for durability well beyond everyday wear.",
    "Backed by a two-year warranty.",
    "Pairs well with the rest of the collection.",
    "A customer favourite, restocked every season.",
];

const CARE: [&str; 8] = [
    "Wipe clean with a damp cloth.",
    "Hand wash only; do not soak.",
    "Dishwasher safe on the top rack.",
    "Treat with oil twice a year to keep it looking new.",
    "Machine wash cold, tumble dry low.",
    "Keep out of direct sunlight to preserve the finish.",
    "Dust regularly with a soft, dry cloth.",
    "Spot clean with mild soap and water.",
];

/// 2^(i/8) × 1000, for log-uniform prices in integer arithmetic.
const EIGHTH_OCTAVES: [i64; 8] = [1000, 1091, 1189, 1297, 1414, 1542, 1682, 1834];

/// The lowest and highest generated price, in minor units.
pub const MIN_PRICE_MINOR: i64 = 100;
pub const MAX_PRICE_MINOR: i64 = 200_000;

/// The SKU of the `index`-th generated product: `SKU-000123-AB`, unique per index.
pub fn sku(index: u64, rng: &mut Rng) -> String {
    let letter = |rng: &mut Rng| char::from(b'A' + rng.below(26) as u8);
    let (a, b) = (letter(rng), letter(rng));
    format!("SKU-{index:06}-{a}{b}")
}

/// "Adjective Material Noun", sometimes with a colour: "Rustic Walnut Desk Lamp, Charcoal".
pub fn product_name(rng: &mut Rng) -> String {
    let adjective = rng.pick(&ADJECTIVES);
    let material = rng.pick(&MATERIALS);
    let noun = rng.pick(&NOUNS);
    if rng.chance(450) {
        format!("{adjective} {material} {noun}, {}", rng.pick(&COLOURS))
    } else {
        format!("{adjective} {material} {noun}")
    }
}

fn description(name: &str, rng: &mut Rng) -> String {
    let feature = rng.pick(&FEATURES);
    let care = rng.pick(&CARE);
    let extra = rng.pick(&FEATURES);
    if extra == feature {
        format!("The {name}. {feature} {care}")
    } else {
        format!("The {name}. {feature} {extra} {care}")
    }
}

/// A price between 1.00 and 2000.00, log-uniform (as many products under 10.00 as between 100.00
/// and 1000.00), ending the way shop prices do: mostly .99, then .00, .49 and .95.
pub fn price_minor(rng: &mut Rng) -> i64 {
    // 88 steps of an eighth of an octave span 1 to 2^11, then a jitter within the step.
    let step = rng.below(88) as usize;
    let base = MIN_PRICE_MINOR * EIGHTH_OCTAVES[step % 8] * (1 << (step / 8)) / 1000;
    let jittered = base * (1000 + rng.between(0, 90)) / 1000;
    let major = (jittered / 100).clamp(1, MAX_PRICE_MINOR / 100 - 1);
    let cents = rng.weighted(&[(99, 55), (0, 25), (49, 10), (95, 10)]);
    major * 100 + cents
}

/// The `index`-th product (from 1) of the data set of `seed`.
pub fn product(seed: u64, index: u64) -> ProductRow {
    let mut rng = Rng::stream(seed, PRODUCT_STREAM, index);
    let created_ms = ANCHOR_MS - rng.between(0, PRODUCT_SPAN_MS - 1);
    let updated_ms = if rng.chance(600) {
        created_ms
    } else {
        (created_ms + rng.between(MINUTE_MS, 90 * DAY_MS)).min(ANCHOR_MS)
    };
    let id = uuid_v7(created_ms, &mut rng);
    let sku = sku(index, &mut rng);
    let name = product_name(&mut rng);
    let description = description(&name, &mut rng);
    let price_minor = price_minor(&mut rng);
    let currency = rng.weighted(&[("USD", 80), ("EUR", 12), ("GBP", 8)]);
    let stock = match rng.below(100) {
        0..4 => 0,
        4..14 => rng.between(1, 9),
        _ => rng.between(10, 500),
    } as i32;
    let active = !rng.chance(50);
    ProductRow {
        id,
        sku,
        name,
        description,
        price_minor,
        currency,
        stock,
        active,
        created_at: timestamp(created_ms),
        updated_at: timestamp(updated_ms),
    }
}

/// A product an order can refer to, as read back from the database.
#[derive(Debug, Clone)]
pub struct CatalogProduct {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub price_minor: i64,
    pub currency: String,
    pub created_ms: i64,
}

/// The products orders are made of, grouped by currency, each list oldest first.
#[derive(Debug)]
pub struct Catalog {
    /// Every product, by (created_at, id).
    products: Vec<CatalogProduct>,
    /// The currency group of each product.
    group_of: Vec<usize>,
    /// Per currency, indexes into `products`, oldest first.
    groups: Vec<Vec<usize>>,
}

impl Catalog {
    /// `products` must be ordered by (created_at, id), as the database returns them.
    pub fn new(products: Vec<CatalogProduct>) -> Self {
        let mut currencies: Vec<&str> = Vec::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of = Vec::with_capacity(products.len());
        for (i, product) in products.iter().enumerate() {
            let group = match currencies.iter().position(|&c| c == product.currency) {
                Some(group) => group,
                None => {
                    currencies.push(&product.currency);
                    groups.push(Vec::new());
                    groups.len() - 1
                }
            };
            groups[group].push(i);
            group_of.push(group);
        }
        Self {
            products,
            group_of,
            groups,
        }
    }

    /// How many products there are.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// How many products (oldest first) existed at `ms`; all of them if none did, so that an
    /// order can always be made (of products created "later" when there is nothing else).
    fn existing(&self, ms: i64) -> usize {
        match self.products.partition_point(|p| p.created_ms <= ms) {
            0 => self.products.len(),
            n => n,
        }
    }

    /// The same among `indexes` (oldest first).
    fn existing_among(&self, indexes: &[usize], ms: i64) -> usize {
        match indexes.partition_point(|&i| self.products[i].created_ms <= ms) {
            0 => indexes.len(),
            n => n,
        }
    }
}

/// One generated order and its lines, ready to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: &'static str,
    pub currency: String,
    pub total_minor: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One line of a generated order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItemRow {
    pub order_id: Uuid,
    pub position: i16,
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub unit_price_minor: i64,
    pub quantity: i32,
    pub line_total_minor: i64,
}

/// The `index`-th order (from 1) of the data set of `seed`: placed by one of `users` within the
/// year before the anchor, of 1–5 distinct products of one currency that existed at the time,
/// appending its lines to `items`. `users` and `catalog` must not be empty.
pub fn order(
    seed: u64,
    index: u64,
    users: &[Uuid],
    catalog: &Catalog,
    items: &mut Vec<OrderItemRow>,
) -> OrderRow {
    let mut rng = Rng::stream(seed, ORDER_STREAM, index);
    let age_ms = rng.between(0, ORDER_SPAN_MS - 1);
    let created_ms = ANCHOR_MS - age_ms;
    let id = uuid_v7(created_ms, &mut rng);
    let user_id = *rng.pick(users);

    // The first product among all that existed then; the others of its currency.
    let first = rng.index(catalog.existing(created_ms));
    let group = &catalog.groups[catalog.group_of[first]];
    let candidates = &group[..catalog.existing_among(group, created_ms)];
    let wanted = (rng.between(1, MAX_LINES as i64) as usize).min(candidates.len());
    let mut chosen = Vec::with_capacity(wanted);
    chosen.push(first);
    let mut attempts = 0;
    while chosen.len() < wanted && attempts < 64 {
        let candidate = *rng.pick(candidates);
        if !chosen.contains(&candidate) {
            chosen.push(candidate);
        }
        attempts += 1;
    }

    let mut total_minor = 0;
    for (position, &i) in chosen.iter().enumerate() {
        let product = &catalog.products[i];
        let quantity = rng.weighted(&[(1, 50), (2, 25), (3, 12), (4, 8), (5, 5)]);
        let line_total_minor = product.price_minor * i64::from(quantity);
        total_minor += line_total_minor;
        items.push(OrderItemRow {
            order_id: id,
            position: position as i16,
            product_id: product.id,
            sku: product.sku.clone(),
            name: product.name.clone(),
            unit_price_minor: product.price_minor,
            quantity,
            line_total_minor,
        });
    }

    // Recent orders are still being handled; older ones are settled.
    let status = if age_ms < 3 * DAY_MS {
        rng.weighted(&[("placed", 80), ("fulfilled", 15), ("cancelled", 5)])
    } else if age_ms < 30 * DAY_MS {
        rng.weighted(&[("placed", 22), ("fulfilled", 70), ("cancelled", 8)])
    } else {
        rng.weighted(&[("placed", 1), ("fulfilled", 92), ("cancelled", 7)])
    };
    let updated_ms = match status {
        "fulfilled" => created_ms + rng.between(HOUR_MS, 5 * DAY_MS),
        "cancelled" => created_ms + rng.between(5 * MINUTE_MS, 2 * DAY_MS),
        _ => created_ms,
    }
    .min(ANCHOR_MS);

    OrderRow {
        id,
        user_id,
        status,
        currency: catalog.products[first].currency.clone(),
        total_minor,
        created_at: timestamp(created_ms),
        updated_at: timestamp(updated_ms),
    }
}

/// A demo product: always present in a seeded database, in USD, with stock.
#[derive(Debug, Clone, Copy)]
pub struct DemoProduct {
    pub sku: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub price_minor: i64,
    pub stock: i32,
}

/// The demo catalog (SPEC §7: "products with stock").
pub const DEMO_PRODUCTS: [DemoProduct; 12] = [
    DemoProduct {
        sku: "DEMO-LAMP-01",
        name: "Walnut Desk Lamp",
        description: "A solid walnut desk lamp with a brass arm and a warm 2700 K LED bulb.",
        price_minor: 8900,
        stock: 40,
    },
    DemoProduct {
        sku: "DEMO-MUG-01",
        name: "Stoneware Coffee Mug",
        description: "A 350 ml hand-glazed stoneware mug. Dishwasher and microwave safe.",
        price_minor: 1850,
        stock: 250,
    },
    DemoProduct {
        sku: "DEMO-KEYBOARD-01",
        name: "Mechanical Keyboard",
        description: "A tenkeyless mechanical keyboard with hot-swappable tactile switches.",
        price_minor: 12900,
        stock: 35,
    },
    DemoProduct {
        sku: "DEMO-BOTTLE-01",
        name: "Insulated Steel Water Bottle",
        description: "Keeps drinks cold for 24 hours or hot for 12. 750 ml, leak-proof lid.",
        price_minor: 3200,
        stock: 180,
    },
    DemoProduct {
        sku: "DEMO-BACKPACK-01",
        name: "Waxed Canvas Backpack",
        description: "A 22 l waxed canvas backpack with a padded 16-inch laptop sleeve.",
        price_minor: 14500,
        stock: 25,
    },
    DemoProduct {
        sku: "DEMO-NOTEBOOK-01",
        name: "Dot Grid Notebook",
        description: "A5, 192 numbered pages of 100 g/m² paper, lay-flat binding.",
        price_minor: 1400,
        stock: 400,
    },
    DemoProduct {
        sku: "DEMO-CHAIR-01",
        name: "Ergonomic Office Chair",
        description: "Adjustable lumbar support, 4D armrests and a breathable mesh back.",
        price_minor: 34900,
        stock: 12,
    },
    DemoProduct {
        sku: "DEMO-HEADPHONES-01",
        name: "Wireless Noise-Cancelling Headphones",
        description: "Over-ear headphones with adaptive noise cancelling and 30 hours of battery.",
        price_minor: 24999,
        stock: 30,
    },
    DemoProduct {
        sku: "DEMO-BOARD-01",
        name: "Bamboo Cutting Board",
        description: "A large end-grain bamboo board with a juice groove. Gentle on knives.",
        price_minor: 3995,
        stock: 90,
    },
    DemoProduct {
        sku: "DEMO-BLANKET-01",
        name: "Merino Wool Throw Blanket",
        description: "130 × 170 cm of soft merino wool, woven in Portugal.",
        price_minor: 11900,
        stock: 20,
    },
    DemoProduct {
        sku: "DEMO-POUROVER-01",
        name: "Glass Pour-Over Coffee Maker",
        description: "A borosilicate glass brewer for up to six cups, with a reusable steel filter.",
        price_minor: 4200,
        stock: 60,
    },
    DemoProduct {
        sku: "DEMO-PLANTPOT-01",
        name: "Ceramic Plant Pot",
        description: "A matte ceramic pot with a drainage hole and a matching saucer. 15 cm.",
        price_minor: 2400,
        stock: 3,
    },
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use strata_domain::{Currency, Description, Price, ProductName, Sku, Stock};

    use super::*;

    fn catalog(seed: u64, n: u64) -> Catalog {
        let mut rows: Vec<_> = (1..=n).map(|i| product(seed, i)).collect();
        rows.sort_by_key(|p| (p.created_at, p.id));
        Catalog::new(
            rows.into_iter()
                .map(|p| CatalogProduct {
                    id: p.id,
                    sku: p.sku,
                    name: p.name,
                    price_minor: p.price_minor,
                    currency: p.currency.to_owned(),
                    created_ms: p.created_at.timestamp_millis(),
                })
                .collect(),
        )
    }

    #[test]
    fn products_depend_only_on_the_seed_and_the_index() {
        assert_eq!(product(7, 123), product(7, 123));
        assert_ne!(product(7, 123), product(8, 123));
        assert_ne!(product(7, 123).id, product(7, 124).id);
        assert!(product(7, 123).sku.starts_with("SKU-000123-"));
    }

    #[test]
    fn generated_products_obey_the_domain_rules() {
        let mut skus = HashSet::new();
        for i in 1..=5_000 {
            let p = product(42, i);
            Sku::parse(&p.sku).unwrap();
            assert!(skus.insert(p.sku.clone()), "duplicate sku {}", p.sku);
            assert_eq!(ProductName::parse(&p.name).unwrap().as_str(), p.name);
            assert_eq!(
                Description::parse(&p.description).unwrap().as_str(),
                p.description
            );
            let currency = Currency::parse(p.currency).unwrap();
            Price::new(p.price_minor, currency).unwrap();
            assert!((MIN_PRICE_MINOR..MAX_PRICE_MINOR).contains(&p.price_minor));
            Stock::new(i64::from(p.stock)).unwrap();
            assert!((0..=500).contains(&p.stock));
            assert!(p.created_at <= p.updated_at);
            assert!(p.updated_at <= timestamp(ANCHOR_MS));
            assert!(p.created_at > timestamp(ANCHOR_MS - PRODUCT_SPAN_MS));
            assert_eq!(p.id.get_version_num(), 7);
            let (secs, nanos) = p.id.get_timestamp().unwrap().to_unix();
            assert_eq!(
                secs as i64 * 1000 + i64::from(nanos / 1_000_000),
                p.created_at.timestamp_millis()
            );
        }
        // The long SKU of a very large data set still fits.
        Sku::parse(&sku(u64::MAX, &mut Rng::new(0))).unwrap();
    }

    #[test]
    fn the_catalog_has_a_realistic_spread() {
        let products: Vec<_> = (1..=20_000).map(|i| product(7, i)).collect();
        let share = |f: &dyn Fn(&ProductRow) -> bool| {
            products.iter().filter(|p| f(p)).count() * 1000 / products.len()
        };
        let inactive = share(&|p| !p.active);
        assert!((40..60).contains(&inactive), "{inactive}‰ inactive");
        let usd = share(&|p| p.currency == "USD");
        assert!((770..830).contains(&usd), "{usd}‰ USD");
        assert!(share(&|p| p.currency == "EUR") > 100);
        assert!(share(&|p| p.currency == "GBP") > 60);
        let out_of_stock = share(&|p| p.stock == 0);
        assert!(
            (30..50).contains(&out_of_stock),
            "{out_of_stock}‰ out of stock"
        );
        // Log-uniform: each decade of prices holds about a third of the products.
        for (low, high) in [(100, 1_000), (1_000, 10_000), (10_000, 100_000)] {
            let decade = share(&|p| (low..high).contains(&p.price_minor));
            assert!((270..360).contains(&decade), "{decade}‰ in {low}..{high}");
        }
        let lamps = share(&|p| p.name.to_lowercase().contains("lamp"));
        assert!((35..65).contains(&lamps), "{lamps}‰ lamps");
    }

    #[test]
    fn orders_are_consistent_and_reproducible() {
        let catalog = catalog(7, 2_000);
        let users = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)];
        let mut seen_statuses = HashSet::new();
        let mut line_counts = [0; MAX_LINES + 1];
        for i in 1..=3_000 {
            let mut items = Vec::new();
            let order = order(7, i, &users, &catalog, &mut items);
            let mut again = Vec::new();
            assert_eq!(order, super::order(7, i, &users, &catalog, &mut again));
            assert_eq!(items, again);

            assert!(users.contains(&order.user_id));
            assert!((1..=MAX_LINES).contains(&items.len()));
            line_counts[items.len()] += 1;
            seen_statuses.insert(order.status);
            assert!(order.created_at <= order.updated_at);
            assert!(order.updated_at <= timestamp(ANCHOR_MS));
            assert_eq!(
                order.total_minor,
                items.iter().map(|l| l.line_total_minor).sum::<i64>()
            );
            let mut products = HashSet::new();
            for (position, line) in items.iter().enumerate() {
                assert_eq!(line.order_id, order.id);
                assert_eq!(line.position as usize, position);
                assert!(products.insert(line.product_id), "a product twice");
                assert!((1..=5).contains(&line.quantity));
                assert_eq!(
                    line.line_total_minor,
                    line.unit_price_minor * i64::from(line.quantity)
                );
                let product = catalog
                    .products
                    .iter()
                    .find(|p| p.id == line.product_id)
                    .unwrap();
                assert_eq!(product.currency, order.currency);
                assert_eq!((&product.sku, &product.name), (&line.sku, &line.name));
                assert!(product.created_ms <= order.created_at.timestamp_millis());
            }
        }
        assert_eq!(seen_statuses.len(), 3);
        assert!(line_counts[1..].iter().all(|&n| n > 400), "{line_counts:?}");
    }

    #[test]
    fn orders_fall_back_to_later_products_when_none_existed_yet() {
        let catalog = Catalog::new(vec![CatalogProduct {
            id: Uuid::from_u128(9),
            sku: "DEMO-1".into(),
            name: "Demo".into(),
            price_minor: 500,
            currency: "USD".into(),
            created_ms: ANCHOR_MS + DAY_MS,
        }]);
        let mut items = Vec::new();
        let order = order(1, 1, &[Uuid::from_u128(1)], &catalog, &mut items);
        assert_eq!(items.len(), 1);
        assert_eq!(order.total_minor, 500 * i64::from(items[0].quantity));
    }

    #[test]
    fn demo_products_obey_the_domain_rules() {
        let usd = Currency::parse("USD").unwrap();
        let mut skus = HashSet::new();
        for demo in DEMO_PRODUCTS {
            Sku::parse(demo.sku).unwrap();
            assert!(demo.sku.starts_with("DEMO-"));
            assert!(skus.insert(demo.sku));
            ProductName::parse(demo.name).unwrap();
            Description::parse(demo.description).unwrap();
            Price::new(demo.price_minor, usd).unwrap();
            assert!(demo.stock > 0);
        }
    }
}
