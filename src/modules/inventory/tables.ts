/** Row types of the tables the inventory module owns. */
import type { ColumnType, Generated } from 'kysely'

type Json<T> = ColumnType<T, string | undefined, string>
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>
/** bigint columns arrive as numbers (int8 parser); stock counts fit in 2^53. */
type Count = ColumnType<number, number | undefined, number>

export type MovementKind =
  | 'receipt'
  | 'adjustment'
  | 'transfer'
  | 'sale'
  | 'return'
  | 'cycle_count'
  | 'reservation'
  | 'release'

export type ReservationStatus = 'active' | 'committed' | 'released' | 'expired'

export interface LocationAddress {
  line1?: string
  line2?: string
  city?: string
  postal_code?: string
  province?: string
  country_code: string
}

export interface StockLocationsTable {
  id: string
  code: string
  name: string
  priority: Generated<number>
  country_code: string
  address: Json<LocationAddress>
  ships_to: ColumnType<string[], string[] | undefined, string[]>
  active: Generated<boolean>
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface InventoryLevelsTable {
  variant_id: string
  location_id: string
  on_hand: Count
  reserved: Count
  safety_stock: Count
  low_stock_threshold: number | null
  updated_at: Generated<Date>
}

export interface InventoryPoliciesTable {
  variant_id: string
  allow_backorder: Generated<boolean>
  preorder: Generated<boolean>
  backorder_limit: number | null
  preorder_available_at: Timestamp | null
  updated_at: Generated<Date>
}

export interface InventoryReservationsTable {
  id: string
  reference: string
  status: Generated<ReservationStatus>
  expires_at: Timestamp | null
  country_code: string | null
  strategy: string
  created_by: string
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

export interface InventoryReservationLinesTable {
  id: string
  reservation_id: string
  variant_id: string
  location_id: string
  quantity: number
  backordered: Count
}

export interface InventoryMovementsTable {
  id: string
  operation_id: string
  variant_id: string
  location_id: string
  kind: MovementKind
  on_hand_delta: number
  reserved_delta: number
  reason: string | null
  reference: string | null
  reservation_id: string | null
  actor: string
  created_at: Generated<Date>
}

export interface InventoryTables {
  stock_locations: StockLocationsTable
  inventory_levels: InventoryLevelsTable
  inventory_policies: InventoryPoliciesTable
  inventory_reservations: InventoryReservationsTable
  inventory_reservation_lines: InventoryReservationLinesTable
  inventory_movements: InventoryMovementsTable
}
